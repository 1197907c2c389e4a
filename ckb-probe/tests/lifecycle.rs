//! Nothing left behind, whatever ends ckb-probe, and several instances on one node do not
//! disturb each other's numbers.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn sigkill_leaves_no_program_link_or_uprobe_behind() {
    let events_before = probe_event_lists();
    let tb = Testbed::spawn(
        "static",
        &["--threads", "1", "--duration", "20", "--rate", "1000"],
    );
    let pid = tb.pid.to_string();
    let probe = Probe::start(&["rocksdb", "--pid", &pid, "--with", "syscall,net", "--json"]);
    tb.start();
    assert!(probe.line(Duration::from_secs(10)).is_some(), "no report");
    let ids = prog_ids_of(probe.child.id());
    assert!(
        ids.len() > 40,
        "too few programs held while running: {ids:?}"
    );
    assert!(still_loaded(&ids).1 > 0, "no links while running");
    probe.signal(libc::SIGKILL);
    let (code, _lines, _err) = probe.wait(Duration::from_secs(30));
    assert_eq!(code, -1, "killed by a signal");
    assert_all_gone(&ids, "after SIGKILL");
    assert_eq!(
        probe_event_lists(),
        events_before,
        "uprobe/kprobe_events changed"
    );
    // SAFETY: stopping our own child.
    unsafe { libc::kill(tb.pid as i32, libc::SIGTERM) };
    let _ = tb.finish();
}

#[test]
fn sigterm_detaches_and_summarizes() {
    let tb = Testbed::spawn(
        "static",
        &["--threads", "1", "--duration", "20", "--rate", "1000"],
    );
    let pid = tb.pid.to_string();
    let probe = Probe::start(&["rocksdb", "--pid", &pid, "--with", "syscall,net", "--json"]);
    tb.start();
    assert!(probe.line(Duration::from_secs(10)).is_some(), "no report");
    let ids = prog_ids_of(probe.child.id());
    assert!(!ids.is_empty(), "no programs held while running");
    probe.signal(libc::SIGTERM);
    // The 46 uprobe links close concurrently (`Engine`'s Drop); the tracepoints of the other
    // layers still wait for the kernel, which a loaded machine can stretch to seconds.
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    assert_eq!(summary(&objs)["end"], "signal");
    assert_all_gone(&ids, "after SIGTERM");
    // SAFETY: stopping our own child.
    unsafe { libc::kill(tb.pid as i32, libc::SIGTERM) };
    let _ = tb.finish();
}

/// An exporter-like long run and an operator's session on the same node: each one's counts are
/// the node's ground truth, as if it ran alone.
#[test]
fn two_instances_on_one_node_both_count_exactly() {
    let tb = Testbed::spawn(
        "static",
        &["--threads", "2", "--duration", "3", "--rate", "2000"],
    );
    let pid = tb.pid.to_string();
    let first = Probe::start(&["rocksdb", "--pid", &pid, "--json"]);
    let second = Probe::start(&["rocksdb", "--pid", &pid, "--json", "--with", "syscall"]);
    tb.start();
    let truth = tb.finish();
    for (who, probe) in [("first", first), ("second", second)] {
        let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
        assert_eq!(code, 0, "{who}: {stderr}");
        let objs = parse_ndjson(&lines);
        let s = summary(&objs);
        assert_counts_exact(s, &truth, who);
        assert_eq!(u(&s["lost_events"]), 0, "{who}");
        assert_eq!(u(&s["unpaired"]), 0, "{who}");
    }
}

/// A real refusal in the middle of attaching: a copy of the testbed whose `rocksdb_delete`
/// starts with `hlt`, an instruction the kernel will not put a uprobe on (x86's uprobe
/// decoder rejects it). ckb-probe says which function failed and why, traces the other 22,
/// and leaves nothing behind: no program, no perf event at that offset while it runs, and no
/// uprobe_events entry after. (The testbed is never started: the patched function would
/// fault if it ran.)
#[test]
fn a_function_the_kernel_refuses_to_probe_is_reported_and_leaves_nothing() {
    const VICTIM: &str = "rocksdb_delete";
    let dir = tempfile::tempdir().unwrap();
    let exe = testbed_copy(dir.path());
    let out = std::process::Command::new(ckb_probe())
        .args(["symbols", "--json"])
        .arg(&exe)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let offset = report["tier1"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == VICTIM)
        .and_then(|f| f["file_offset"].as_u64())
        .expect("offset of the victim");
    let mut bytes = std::fs::read(&exe).unwrap();
    bytes[offset as usize] = 0xf4; // hlt
    std::fs::write(&exe, &bytes).unwrap();

    let lists = probe_event_lists();
    let tb = Testbed::spawn_exe(&exe, &["--threads", "1", "--duration", "1"]);
    let pid = tb.pid.to_string();
    let probe = Probe::start(&["rocksdb", "--pid", &pid, "--json", "-d", "2"]);
    let ids = prog_ids_of(probe.child.id());
    // Whatever else holds the probes (perf events or links), none sits on the refused site.
    let perf = std::process::Command::new("bpftool")
        .args(["perf", "list", "--json"])
        .output()
        .unwrap();
    let perf: serde_json::Value = serde_json::from_slice(&perf.stdout).unwrap_or_default();
    let ours: Vec<&serde_json::Value> = perf
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| u(&e["pid"]) == u64::from(probe.child.id()))
        .collect();
    assert!(
        ours.iter().all(|e| u(&e["offset"]) != offset),
        "a probe on the refused site: {ours:?}"
    );
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Unknown error"), "{stderr}");
    if code == 0 {
        // Went on with the rest, and said which one failed.
        let s = summary(&parse_ndjson(&lines)).clone();
        let attached: Vec<&str> = s["attached"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(attached.len(), 22, "{s}");
        assert!(!attached.contains(&VICTIM), "{s}");
        let missing = s["missing"].as_array().expect("missing");
        // The kernel's ENOTSUPP in words, not libc's "Unknown error 524".
        assert!(
            missing.iter().any(|m| m["function"] == VICTIM
                && m["reason"]
                    .as_str()
                    .unwrap()
                    .contains("the kernel cannot probe the instruction at this offset (ENOTSUPP")),
            "{s}"
        );
        assert!(
            stderr.contains(VICTIM),
            "the failure is not named: {stderr}"
        );
        assert!(stderr.contains("22 of 23 functions traced"), "{stderr}");
    } else {
        // Or refused the run as a whole, with one line naming the function.
        assert_eq!(code, 1, "{stderr}");
        assert!(lines.is_empty(), "{lines:?}");
        assert!(stderr.contains(VICTIM), "{stderr}");
    }
    assert_all_gone(&ids, "after a refused probe");
    assert_eq!(probe_event_lists(), lists, "uprobe/kprobe_events changed");
}

/// A failure after probes are attached aborts the run: `rocksdb --with net` where the
/// network layer cannot run (no tracefs and no kprobes, see `support::Hide::Tracefs`). The
/// RocksDB uprobes are attached first, then the net layer fails: exit 1 with one line naming
/// the cause, and every program the run held is gone.
#[test]
fn an_abort_after_the_uprobes_are_attached_leaves_nothing() {
    let lists = probe_event_lists();
    let tb = Testbed::spawn("static", &["--threads", "1", "--duration", "1"]);
    let pid = tb.pid.to_string();
    let (code, out, err, ids) = run_sampling_programs(hiding(
        Hide::Tracefs,
        &["rocksdb", "--pid", &pid, "--with", "net"],
    ));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tracefs is not mounted"), "{err}");
    // The RocksDB programs were loaded and attached before the abort.
    assert!(ids.len() >= 10, "programs held on the way: {ids:?}");
    assert_all_gone(&ids, "after the abort");
    assert_eq!(probe_event_lists(), lists, "uprobe/kprobe_events changed");
}
