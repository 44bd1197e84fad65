//! The fuzz seeds (fuzz/seeds/<target>/: the fewest inputs that reach every
//! edge the fuzzers reached) and regressions (fuzz/regressions/<target>/:
//! inputs that once broke a parser, kept after the fix) on every test run:
//! each input replayed through the same entry points, then a short run of
//! random mutations of them. The coverage-guided fuzzers (`fuzz/run`) need an
//! instrumented build of every dependency, longer than CI can spend; this
//! run is their blind, cheap stand-in between two of those.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Corpus = Vec<Vec<u8>>;

/// Every input in `dir`, in name order; none when there is no such folder.
fn inputs_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .map(|entry| {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    // read_dir's order varies; a seed must replay the same run.
    inputs.sort();
    inputs
}

/// A target's seeds, then its regressions.
fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = inputs_in(&fuzz.join("seeds").join(name));
    assert!(!seeds.is_empty(), "{name}: no seeds in fuzz/seeds/{name}/");
    let mut inputs = seeds;
    inputs.extend(inputs_in(&fuzz.join("regressions").join(name)));
    inputs
}

#[test]
fn every_corpus_input_is_handled() {
    for (name, target) in thrust::fuzzing::TARGETS {
        for (path, data) in corpus(name) {
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
        }
    }
}

/// `THRUST_FUZZ_SECONDS` per target (default 2), from `THRUST_FUZZ_SEED`
/// (default: the clock, printed so a failure can be replayed).
#[test]
fn mutated_corpus_inputs_are_handled() {
    let seconds: u64 = std::env::var("THRUST_FUZZ_SECONDS").map_or(2, |s| s.parse().unwrap());
    let seed: u64 = std::env::var("THRUST_FUZZ_SEED")
        .map_or_else(|_| fastrand::u64(..), |s| s.parse().unwrap());
    println!("THRUST_FUZZ_SEED={seed}");
    for (name, target) in thrust::fuzzing::TARGETS {
        let corpus: Corpus = corpus(name).into_iter().map(|(_, data)| data).collect();
        let mut rng = fastrand::Rng::with_seed(seed);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0u64;
        while Instant::now() < deadline {
            for _ in 0..256 {
                let input = mutated(&mut rng, &corpus);
                if std::panic::catch_unwind(|| target(&input)).is_err() {
                    let saved = Path::new(env!("CARGO_TARGET_TMPDIR"))
                        .join(format!("fuzz-{name}-{seed}-{runs}"));
                    std::fs::write(&saved, &input).unwrap();
                    panic!(
                        "{name} fails on {} (THRUST_FUZZ_SEED={seed}); \
                         fix it and add the file to fuzz/regressions/{name}/",
                        saved.display()
                    );
                }
                runs += 1;
            }
        }
        println!("{name}: {runs} mutated inputs, no failure");
    }
}

/// Bytes the header and config parsers give meaning to.
const SYNTAX: &[u8] = b",;=\"\\ \t\r\n-*/:0123456789";
/// Numbers at the edges of the integer types parsers convert to.
const NUMBERS: [&str; 6] = [
    "0",
    "-1",
    "4294967296",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999",
];

/// One corpus input changed by one to four of libFuzzer's simpler moves.
fn mutated(rng: &mut fastrand::Rng, corpus: &Corpus) -> Vec<u8> {
    let mut data = corpus[rng.usize(..corpus.len())].clone();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=data.len());
        match rng.u8(..6) {
            // Flip a bit.
            0 if !data.is_empty() => {
                let i = rng.usize(..data.len());
                data[i] ^= 1 << rng.u8(..8);
            }
            // Insert a byte, often one that means something to a parser.
            1 => {
                let byte = if rng.bool() {
                    SYNTAX[rng.usize(..SYNTAX.len())]
                } else {
                    rng.u8(..)
                };
                data.insert(at, byte);
            }
            // Delete a run.
            2 if at < data.len() => {
                let end = rng.usize(at..=data.len());
                data.drain(at..end);
            }
            // Repeat a run.
            3 if at < data.len() => {
                let end = rng.usize(at..=data.len().min(at + 64));
                let run = data[at..end].to_vec();
                data.splice(at..at, run);
            }
            // Splice in part of another input.
            4 => {
                let other = &corpus[rng.usize(..corpus.len())];
                let from = rng.usize(..=other.len());
                let end = rng.usize(from..=other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            // Insert a boundary number.
            _ => {
                let number = NUMBERS[rng.usize(..NUMBERS.len())];
                data.splice(at..at, number.bytes());
            }
        }
    }
    data
}
