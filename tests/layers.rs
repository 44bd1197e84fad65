//! scripts/layers, the checker of ARCHITECTURE.md's layer rules, run on a
//! copy of the source with one violation of each kind planted: each is
//! reported, and the untouched copy passes.

use std::path::Path;
use std::process::Command;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the project's src/ and ARCHITECTURE.md.
fn project_copy() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&root.join("src"), &copy.path().join("src"));
    std::fs::copy(
        root.join("ARCHITECTURE.md"),
        copy.path().join("ARCHITECTURE.md"),
    )
    .unwrap();
    copy
}

/// Appends `line` to the file `file` under src/ of `copy`.
fn plant(copy: &Path, file: &str, line: &str) {
    let path = copy.join("src").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.insert_str(0, &format!("{line}\n"));
    std::fs::write(path, text).unwrap();
}

/// The checker's verdict on `copy`: its exit code and what it printed.
fn check(copy: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/layers");
    let out = Command::new("python3")
        .arg(script)
        .arg(copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_project_as_it_is_passes() {
    let copy = project_copy();
    assert_eq!(check(copy.path()), (0, String::new()));
}

#[test]
fn each_kind_of_violation_is_reported() {
    let planted = [
        // An upward call by a full path inside code.
        (
            "config/env.rs",
            "fn planted() { crate::server::listen::bind(); }",
            "crate::config::env -> crate::server::listen: config may not call server",
        ),
        // An upward call through super::super::super.
        (
            "http/body/client.rs",
            "use super::super::super::pipeline::App;",
            "crate::http::body::client -> crate::pipeline: http may not call pipeline",
        ),
        // An upward call hidden in a grouped import.
        (
            "conn/accept.rs",
            "use crate::{config::Config, app::{target, upstream::UpstreamClient}};",
            "crate::conn::accept -> crate::app::upstream: conn may not call app",
        ),
        // A layer below, but not among those the table lets tls call.
        (
            "tls/static_cert.rs",
            "use crate::http::headers;",
            "crate::tls::static_cert -> crate::http::headers: ARCHITECTURE.md does not list http among what tls calls",
        ),
    ];
    for (file, line, expected) in planted {
        let copy = project_copy();
        plant(copy.path(), file, line);
        let (code, text) = check(copy.path());
        assert_eq!(code, 1, "{line}: {text}");
        assert!(
            text.lines().any(|l| l.starts_with(expected)),
            "{line}:\n{text}"
        );
    }
}

#[test]
fn an_import_circle_is_reported() {
    let copy = project_copy();
    plant(copy.path(), "log/json.rs", "use super::sink;");
    plant(copy.path(), "log/sink.rs", "use super::json;");
    let (code, text) = check(copy.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("import circle: ")
            && text.contains("crate::log::json")
            && text.contains("crate::log::sink"),
        "{text}"
    );
}
