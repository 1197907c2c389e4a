//! A stripped node binary: without help ckb-probe says what is missing and how to fix it; with
//! `--symbols-from` (an unstripped build, same build-id) it attaches to the running stripped
//! binary and counts exactly; a build with another build-id is refused. A binary replaced on
//! disk while it runs is still traced.

mod support;

use std::{process::Command, time::Duration};

use support::{exporter::Exporter, *};

/// `ckb-probe ARGS --symbols-from <another build>`: exit 2, one line naming the build-ids,
/// nothing printed or attached.
fn refused_by_build_id<S: AsRef<std::ffi::OsStr>>(args: &[S]) {
    let out = Command::new(ckb_probe())
        .args(args)
        .arg("--symbols-from")
        .arg(testbed("dylib"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("build-id"), "{err}");
    assert!(out.stdout.is_empty());
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
    refused_by_build_id(&["rocksdb", "--pid", &pid, "-n", "1"]);

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

/// `export` takes `--symbols-from` as `rocksdb` does: with the unstripped build it counts the
/// stripped process's calls exactly; another build is refused by build-id (exit 2), though
/// export goes on without a layer that cannot attach. (`overview`: `tests/overview_tui.rs`.)
#[test]
fn export_with_symbols_from() {
    let dir = tempfile::tempdir().unwrap();
    let (full, node) = stripped_copy(dir.path());
    let full = full.to_str().unwrap();
    let args = ["--threads", "1", "--duration", "2", "--rate", "1000"];

    let tb = Testbed::spawn_exe(&node, &args);
    let pid = tb.pid.to_string();
    refused_by_build_id(&["export", "--pid", &pid, "--listen", "127.0.0.1:0"]);
    let exp = Exporter::start(&[
        "--pid",
        &pid,
        "--listen",
        "127.0.0.1:0",
        "--layers",
        "rocksdb",
        "--warmup",
        "0",
        "--symbols-from",
        full,
    ]);
    tb.start();
    let truth = tb.finish();
    // 503 once the final read of the exited node is published.
    exp.wait_health(503, Duration::from_secs(30));
    let (_, _, metrics) = exp.get("/metrics", None);
    let mut compared = 0;
    for (f, t) in truth["functions"].as_object().unwrap() {
        let label = format!("function=\"{f}\"");
        let counted: Vec<f64> = metrics
            .lines()
            .filter(|l| l.starts_with("ckb_probe_rocksdb_calls_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
            .collect();
        if !counted.is_empty() {
            assert_eq!(
                counted.iter().sum::<f64>() as u64,
                u(&t["calls"]),
                "export: {f}"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 20,
        "only {compared} functions exported: {metrics}"
    );
    assert_eq!(exp.stop(), 0);
}

/// A node whose binary was replaced on disk while it runs (`/proc/PID/exe` reads
/// `... (deleted)`, as after an upgrade in place): ckb-probe still finds its functions through
/// the running inode and counts exactly.
#[test]
fn binary_replaced_on_disk_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let exe = testbed_copy(dir.path());
    let tb = Testbed::spawn_exe(
        &exe,
        &["--threads", "1", "--duration", "2", "--rate", "1000"],
    );
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, b"not the running binary").unwrap();
    let shown = std::fs::read_link(format!("/proc/{}/exe", tb.pid)).unwrap();
    assert!(shown.to_string_lossy().ends_with(" (deleted)"), "{shown:?}");
    let probe = Probe::start(&["rocksdb", "--pid", &tb.pid.to_string(), "--json"]);
    tb.start();
    let truth = tb.finish();
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    assert_counts_exact(summary(&objs), &truth, "replaced binary");
}

/// Offsets, first instructions and tiers of each traced function, by name, from a `symbols
/// --json` report.
fn tier1(report: &serde_json::Value) -> Vec<(String, Option<u64>, String)> {
    report["tier1"]
        .as_array()
        .expect("tier1")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["file_offset"].as_u64(),
                f["first_insn"].to_string(),
            )
        })
        .collect()
}

fn symbols_json(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = Command::new(ckb_probe())
        .arg("symbols")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `symbols` on a stripped binary: without help it finds no function and says to pass
/// `--symbols-from`; with the unstripped build it reports what that build reports (offsets,
/// first instructions, tiers), for the file and for a process running it, marked stripped and
/// naming where the symbols came from; another build is refused by build-id.
#[test]
fn symbols_of_a_stripped_binary_with_symbols_from() {
    let dir = tempfile::tempdir().unwrap();
    let (full, node) = stripped_copy(dir.path());
    let alone = symbols_json(&[node.as_os_str()]);
    assert_eq!(alone["stripped"], true);
    assert!(tier1(&alone).iter().all(|(_, off, _)| off.is_none()));
    assert!(
        alone["hint"].as_str().unwrap().contains("--symbols-from"),
        "{alone}"
    );

    let want = symbols_json(&[full.as_os_str()]);
    let from = [
        node.as_os_str(),
        "--symbols-from".as_ref(),
        full.as_os_str(),
    ];
    let helped = symbols_json(&from);
    assert_eq!(tier1(&helped), tier1(&want));
    assert!(
        tier1(&helped)
            .iter()
            .filter(|(_, off, _)| off.is_some())
            .count()
            >= 23
    );
    for same in [
        "build_id",
        "tier2_count",
        "tier3_count",
        "rocksdb_linkage",
        "tier2",
    ] {
        assert_eq!(helped[same], want[same], "{same}");
    }
    assert_eq!(helped["stripped"], true);
    assert_eq!(helped["symbols_from"], full.to_str().unwrap());
    assert_eq!(
        u(&helped["size_bytes"]),
        std::fs::metadata(&node).unwrap().len()
    );

    // The same for a process running the stripped binary.
    let tb = Testbed::spawn_exe(&node, &["--threads", "1", "--duration", "1"]);
    let pid = tb.pid.to_string();
    let by_pid = symbols_json(&[
        "--pid".as_ref(),
        pid.as_ref(),
        "--symbols-from".as_ref(),
        full.as_os_str(),
    ]);
    assert_eq!(tier1(&by_pid), tier1(&want));
    assert_eq!(u(&by_pid["pid"]), u64::from(tb.pid));
    drop(tb);

    // Human output names the source of the symbols.
    let out = Command::new(ckb_probe())
        .arg("symbols")
        .args(from)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("symbols from  {} (same build-id)", full.display())),
        "{text}"
    );
    assert!(text.contains("stripped      yes"), "{text}");

    // Another build: refused.
    refused_by_build_id(&[std::ffi::OsStr::new("symbols"), node.as_os_str()]);
}
