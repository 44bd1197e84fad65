//! Every input in the fuzz corpora (fuzz/corpus/<target>/, what the fuzzers
//! found interesting, plus the crashes they found once fixed) replayed
//! through the same entry points, on every test run.

use std::path::Path;

#[test]
fn every_corpus_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in thrust::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "{name}: empty corpus");
    }
}
