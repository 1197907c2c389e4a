//! `--follow`: the node exits and comes back (restarted, or upgraded to another binary at the
//! same path); ckb-probe marks the gap, attaches to the new process by itself, and its counts
//! for each process are that process's ground truth, never mixed.

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

/// Reads stdout lines until one satisfies `want`, keeping every line read.
fn until(probe: &Probe, seen: &mut Vec<Value>, what: &str, want: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(l) = probe.line(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&l).expect("NDJSON line");
            let hit = want(&v);
            seen.push(v);
            if hit {
                return;
            }
        }
    }
    panic!("no {what} within 60 s; seen: {seen:?}");
}

/// Per traced function: the sum of the counts of `pid`'s interval reports equals `truth`.
fn assert_exact(lines: &[Value], pid: u32, truth: &Value, traced: &[Value], who: &str) {
    for f in traced {
        let f = f.as_str().unwrap();
        let counted: u64 = lines
            .iter()
            .filter(|o| o["type"] == "interval" && u(&o["pid"]) == u64::from(pid))
            .map(|o| u(&o["functions"][f]["count"]))
            .sum();
        assert_eq!(counted, u(&truth["functions"][f]["calls"]), "{who}: {f}");
    }
}

#[test]
fn follows_a_restart_and_an_upgrade_at_the_same_path() {
    let work = tempfile::tempdir().unwrap();
    let exe = work.path().join("node");
    std::fs::copy(testbed("static"), &exe).unwrap();
    let args = ["--threads", "1", "--duration", "2", "--rate", "1000"];

    let a = Testbed::spawn_exe(&exe, &args);
    let pid_a = a.pid;
    let probe = Probe::start(&[
        "rocksdb",
        "--pid",
        &pid_a.to_string(),
        "--follow",
        "--json",
        "--warmup",
        "0",
    ]);
    a.start();
    let truth_a = a.finish();
    let mut seen = Vec::new();
    until(&probe, &mut seen, "target_exited", |v| {
        v["type"] == "target_exited"
    });

    // The upgrade: another binary (RocksDB as a shared library now) at the same path.
    std::fs::remove_file(&exe).unwrap();
    std::fs::copy(testbed("dylib"), &exe).unwrap();
    let b = Testbed::spawn_exe(&exe, &args);
    let pid_b = b.pid;
    until(&probe, &mut seen, "target_attached", |v| {
        v["type"] == "target_attached"
    });
    b.start();
    let truth_b = b.finish();
    until(&probe, &mut seen, "the second exit", |v| {
        v["type"] == "target_exited" && u(&v["pid"]) == u64::from(pid_b)
    });
    probe.signal(libc::SIGINT);
    let (code, rest, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    seen.extend(
        rest.iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()),
    );

    let attached = seen
        .iter()
        .find(|v| v["type"] == "target_attached")
        .unwrap();
    assert_eq!(u(&attached["pid"]), u64::from(pid_b));
    assert_eq!(u(&attached["previous_pid"]), u64::from(pid_a));
    assert_eq!(u(&attached["restarts"]), 1);
    let s = seen.last().unwrap();
    let traced = s["attached"].as_array().unwrap();
    assert_eq!(traced.len(), 23, "{s}");
    // Each process's intervals hold exactly its own calls: nothing lost, nothing mixed.
    assert_exact(&seen, pid_a, &truth_a, traced, "first process");
    assert_exact(&seen, pid_b, &truth_b, traced, "upgraded process");
    assert_eq!(s["type"], "summary");
    assert_eq!(u(&s["pid"]), u64::from(pid_b));
    assert_eq!(s["end"], "signal");
    assert!(
        stderr.contains("waiting for the node to come back"),
        "{stderr}"
    );
}

#[test]
fn without_follow_the_run_ends_with_the_target() {
    let (_truth, lines) = testbed_run(
        "static",
        &["--threads", "1", "--duration", "1", "--rate", "500"],
        &["--json"],
    );
    let objs = parse_ndjson(&lines);
    assert!(objs.iter().all(|o| o["type"] != "target_exited"));
    assert_eq!(summary(&objs)["end"], "target_exited");
}

#[test]
fn keep_baseline_needs_follow() {
    let out = Command::new(ckb_probe())
        .args(["rocksdb", "--keep-baseline"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--follow"), "{err}");
}

/// A real CKB dev node restarted while it mines: ckb-probe follows it to its new PID (not to the
/// miner, which runs the same binary) and counts the new node's RocksDB calls.
#[test]
fn follows_a_real_ckb_node_across_a_restart() {
    let mut node = support::ckb_node::CkbNode::start();
    let old = node.pid;
    let probe = Probe::start(&[
        "rocksdb",
        "--pid",
        &old.to_string(),
        "--follow",
        "--json",
        "--warmup",
        "0",
    ]);
    let mut seen = Vec::new();
    until(&probe, &mut seen, "a first interval", |v| {
        v["type"] == "interval"
    });
    node.restart();
    until(&probe, &mut seen, "target_attached", |v| {
        v["type"] == "target_attached"
    });
    let attached = seen.last().unwrap().clone();
    assert_eq!(u(&attached["previous_pid"]), u64::from(old));
    assert_eq!(u(&attached["pid"]), u64::from(node.pid), "{attached}");
    assert!(
        attached["node"].as_str().unwrap().starts_with("CKB v"),
        "{attached}"
    );
    // The restarted node mines again: its RocksDB calls show up under its PID.
    until(&probe, &mut seen, "RocksDB calls of the new node", |v| {
        v["type"] == "interval"
            && u(&v["pid"]) == u64::from(node.pid)
            && u(&v["operations"]["GET"]["count"]) > 0
    });
    probe.signal(libc::SIGINT);
    let (code, _rest, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
}
