//! What the binary's integration tests share: running `qconv` from the repository root, scratch
//! directories, and the user-error assertions.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (tests run `qconv` from there).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs qconv; returns (exit code, stdout, stderr).
pub fn qconv(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qconv"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("qconv runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A fresh directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts exit code 2, no panic, and every `needle` on stderr; returns (stdout, stderr).
pub fn assert_exit_2(args: &[&str], needles: &[&str]) -> (String, String) {
    let (code, stdout, stderr) = qconv(args);
    assert_eq!(code, 2, "{args:?}: exit code\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: `{n}` missing from: {stderr}");
    }
    (stdout, stderr)
}

/// Asserts a user error: exit code 2, one line on stderr containing every `needle`, nothing on
/// stdout, no panic.
pub fn assert_user_error(args: &[&str], needles: &[&str]) {
    let (stdout, stderr) = assert_exit_2(args, needles);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stdout.is_empty(), "{args:?}: stdout: {stdout}");
}
