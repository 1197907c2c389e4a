//! The acceptance scripts of the reproducible environment (spec 6.3: env-check, demo-check,
//! demo-normal, demo-stress) run directly on this host, against the testbed and a real CKB
//! dev-chain node: each prints expected vs actual and must exit 0. In the compose environment
//! they run unchanged inside the ckb-probe container.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{ckb_node::CkbNode, *};

fn script(name: &str, args: &[&str]) -> Output {
    Command::new(workspace_root().join("scripts").join(name))
        .args(args)
        .env("CKB_PROBE_BIN", ckb_probe())
        .env("CKB_PROBE_TESTBED_BIN", testbed("static"))
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Exit 0, no line marked FAIL, and the closing line; returns stdout.
fn passes(name: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} exited {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert!(!stdout.contains("  FAIL "), "{name}: {stdout}");
    let check = name.trim_end_matches(".sh");
    assert!(
        stdout.contains(&format!("{check}: all ")) && stdout.contains("checks as expected"),
        "{name}: no closing line\n{stdout}"
    );
    stdout
}

#[test]
fn env_check_passes_on_this_host() {
    let out = passes("env-check.sh", script("env-check.sh", &[]));
    for line in [
        "Linux kernel",
        "kernel BTF",
        "ckb-probe check (exit status)",
    ] {
        assert!(out.contains(line), "{line} not checked:\n{out}");
    }
}

#[test]
fn env_check_fails_on_a_missing_requirement() {
    // Docker is required with --docker; this host has no engine, so the check must say so.
    let out = script("env-check.sh", &["--docker"]);
    if Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return; // a host with a Docker engine: nothing missing to report
    }
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL Docker engine"), "{stdout}");
}

#[test]
fn demo_check_on_the_testbed() {
    let out = passes("demo-check.sh", script("demo-check.sh", &["--testbed"]));
    assert!(out.contains("RocksDB linkage"), "{out}");
}

#[test]
fn demo_normal_on_the_testbed_writes_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("normal.json");
    let snap_s = snap.display().to_string();
    passes(
        "demo-normal.sh",
        script(
            "demo-normal.sh",
            &["--testbed", "--duration", "12", "--out", &snap_s],
        ),
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    assert_eq!(v["last_interval"]["type"], "interval");
    assert_eq!(v["summary"]["type"], "summary");
    assert!(u(&v["summary"]["operations"]["GET"]["count"]) > 0);
}

#[test]
fn demo_stress_alerts_within_15_seconds() {
    let out = passes("demo-stress.sh", script("demo-stress.sh", &[]));
    assert!(out.contains("ANOMALY DETECTED"), "{out}");
    assert!(out.contains("alert delay after storm start (F-7)"), "{out}");
}

#[test]
fn demo_check_and_normal_on_a_real_node() {
    let node = CkbNode::start();
    let pid = node.pid.to_string();
    let out = passes("demo-check.sh", script("demo-check.sh", &["--pid", &pid]));
    assert!(out.contains("CKB version in the binary"), "{out}");
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("normal.json");
    let snap_s = snap.display().to_string();
    let out = passes(
        "demo-normal.sh",
        script(
            "demo-normal.sh",
            &["--pid", &pid, "--duration", "20", "--out", &snap_s],
        ),
    );
    assert!(out.contains("CKB v"), "{out}");
    assert!(Path::new(&snap).exists());
}
