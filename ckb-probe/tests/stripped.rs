//! A stripped node binary: without help ckb-probe says what is missing and how to fix it; with
//! `--symbols-from` (an unstripped build, same build-id) it attaches to the running stripped
//! binary and counts exactly; a build with another build-id is refused.

mod support;

use std::{process::Command, time::Duration};

use support::*;

fn stripped_copy(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let full = dir.join("full");
    let node = dir.join("node");
    std::fs::copy(testbed("static"), &full).unwrap();
    let st = Command::new("strip")
        .arg("-o")
        .arg(&node)
        .arg(&full)
        .status()
        .expect("strip (binutils)");
    assert!(st.success());
    (full, node)
}

#[test]
fn stripped_binary_with_and_without_symbols_from() {
    let dir = tempfile::tempdir().unwrap();
    let (full, node) = stripped_copy(dir.path());
    let args = ["--threads", "1", "--duration", "2", "--rate", "1000"];

    // Without --symbols-from: one line naming the problem and the flag, exit 2.
    let tb = Testbed::spawn_exe(&node, &args);
    let pid = tb.pid.to_string();
    let out = Command::new(ckb_probe())
        .args(["rocksdb", "--pid", &pid, "-n", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("stripped") && err.contains("--symbols-from"),
        "{err}"
    );
    // Another build: refused by build-id, nothing attached.
    let out = Command::new(ckb_probe())
        .args(["rocksdb", "--pid", &pid, "-n", "1", "--symbols-from"])
        .arg(testbed("dylib"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("build-id"), "{err}");

    // With the unstripped build: exact counts from the stripped process.
    let probe = Probe::start(&[
        "rocksdb",
        "--pid",
        &pid,
        "--json",
        "--symbols-from",
        full.to_str().unwrap(),
    ]);
    tb.start();
    let truth = tb.finish();
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    assert_counts_exact(s, &truth, "stripped node");
}
