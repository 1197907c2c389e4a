//! A stripped node binary: without help ckb-probe says what is missing and how to fix it; with
//! `--symbols-from` (an unstripped build, same build-id) it attaches to the running stripped
//! binary and counts exactly; a build with another build-id is refused. A binary replaced on
//! disk while it runs is still traced.

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
