//! Nothing left behind, whatever ends ckb-probe, and several instances on one node do not
//! disturb each other's numbers.

mod support;

use std::time::Duration;

use support::*;

fn uprobe_events() -> String {
    std::fs::read_to_string("/sys/kernel/tracing/uprobe_events").unwrap_or_default()
}

#[test]
fn sigkill_leaves_no_program_link_or_uprobe_behind() {
    let events_before = uprobe_events();
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
    assert_eq!(uprobe_events(), events_before, "uprobe_events changed");
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
    // Detaching 46 uprobes waits for an RCU grace period each: slow on a loaded machine.
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
