//! A recorded run is the run: `--record FILE` writes every report of the model as NDJSON, and
//! `ckb-probe replay FILE` renders the same tables the live run printed, byte for byte. The
//! recorded counts are the testbed's ground truth.

mod support;

use std::process::Command;

use support::*;

fn replay(file: &std::path::Path, flags: &[&str]) -> String {
    let out = Command::new(ckb_probe())
        .arg("replay")
        .arg(file)
        .args(flags)
        .output()
        .expect("run replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `probe_flags` for the live run, `view` for both the live run and the replay.
fn live_and_replayed(probe_flags: &[&str], view: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("run.ndjson");
    let rec_s = rec.to_str().unwrap();
    let mut extra = vec!["--with", "syscall,net", "--warmup", "1", "--record", rec_s];
    extra.extend_from_slice(probe_flags);
    extra.extend_from_slice(view);
    let (truth, lines) = testbed_run(
        "static",
        &["--threads", "2", "--duration", "4", "--rate", "2000"],
        &extra,
    );
    let live = lines.join("\n") + "\n";
    let again = replay(&rec, view);
    assert_eq!(
        again, live,
        "replay of {view:?} differs from the live tables"
    );
    // The recording carries the exact counts.
    let recorded = std::fs::read_to_string(&rec).unwrap();
    let objs = parse_ndjson(&recorded.lines().map(String::from).collect::<Vec<_>>());
    let s = summary(&objs);
    for (f, t) in truth["functions"].as_object().unwrap() {
        if let Some(p) = s["functions"].get(f) {
            assert_eq!(u(&p["count"]), u(&t["calls"]), "{f}");
        }
    }
}

#[test]
fn replay_renders_the_live_tables() {
    live_and_replayed(&[], &["--by-cf"]);
}

#[test]
fn replay_renders_the_live_slow_log_and_histograms() {
    live_and_replayed(&["--threshold", "30"], &["--slow"]);
    live_and_replayed(&[], &["--histogram"]);
}

#[test]
fn replay_and_record_refuse_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"type\":\"interval\"}\n").unwrap();
    let out = Command::new(ckb_probe())
        .arg("replay")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = Command::new(ckb_probe())
        .args(["replay", "/nonexistent/run.ndjson"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // An existing file is never overwritten by --record, and nothing is attached.
    let keep = dir.path().join("keep.ndjson");
    std::fs::write(&keep, "mine\n").unwrap();
    let out = Command::new(ckb_probe())
        .args([
            "rocksdb",
            "--pid",
            &std::process::id().to_string(),
            "--record",
        ])
        .arg(&keep)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "mine\n");
}
