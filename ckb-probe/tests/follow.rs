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

#[test]
fn follows_a_restart_and_an_upgrade_at_the_same_path() {
    let work = tempfile::tempdir().unwrap();
    let exe = testbed_copy(work.path());
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
    let b = Testbed::successor_at(&exe, &testbed("dylib"), &args);
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
    assert_exact_per_pid(&seen, pid_a, &truth_a, traced, "first process");
    assert_exact_per_pid(&seen, pid_b, &truth_b, traced, "upgraded process");
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

/// `rocksdb --follow --json` on `pid`, once it has reported its first interval (kept).
fn follow_from_first_interval(pid: u32) -> (Probe, Vec<Value>) {
    follow_from_first_interval_with(pid, std::process::Command::new(support::ckb_probe()))
}

/// [`follow_from_first_interval`] with `cmd` as the ckb-probe command line (e.g. as another user).
fn follow_from_first_interval_with(
    pid: u32,
    mut cmd: std::process::Command,
) -> (Probe, Vec<Value>) {
    cmd.args([
        "rocksdb",
        "--pid",
        &pid.to_string(),
        "--follow",
        "--json",
        "--warmup",
        "0",
    ]);
    let probe = Probe::spawn(cmd);
    let mut seen = Vec::new();
    until(&probe, &mut seen, "a first interval", |v| {
        v["type"] == "interval"
    });
    (probe, seen)
}

/// A real CKB dev node restarted while it mines: ckb-probe follows it to its new PID (not to the
/// miner, which runs the same binary) and counts the new node's RocksDB calls.
#[test]
fn follows_a_real_ckb_node_across_a_restart() {
    let mut node = support::ckb_node::CkbNode::start();
    let old = node.pid;
    let (probe, mut seen) = follow_from_first_interval(old);
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

/// RPC load on a real node: a thread asks for blocks by number as fast as the node answers,
/// and counts the answers. Each answer reads the block's hash from RocksDB (a GET).
struct RpcLoad {
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RpcLoad {
    fn start(port: u16) -> RpcLoad {
        use std::sync::atomic::Ordering::Relaxed;
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (answered.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut n = 0u64;
            while !s.load(Relaxed) {
                // The node is down during the restart: no answer, try again.
                let block = ckb_probe::node::call(
                    addr,
                    "get_block_by_number",
                    serde_json::json!([format!("{:#x}", n % 8)]),
                );
                if block.is_some_and(|b| b.is_object()) {
                    a.fetch_add(1, Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
                n += 1;
            }
        });
        RpcLoad {
            answered,
            stop,
            thread: Some(thread),
        }
    }

    fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RpcLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A real CKB dev node restarted while it mines and serves RPC load, followed by a ckb-probe
/// running as user nobody with the minimal capabilities. The counters after the restart are
/// the new process's own: its intervals count at least one GET per RPC answer
/// given between the `target_attached` event and the end of the run, and the old process's
/// intervals at least one per answer given while it was traced.
#[test]
fn follows_a_real_ckb_node_restarted_under_rpc_load() {
    let mut node = support::ckb_node::CkbNode::start();
    let old = node.pid;
    let load = RpcLoad::start(node.rpc_port);
    // As user nobody holding only the RocksDB layer's minimal set (INSTALL, section 3): the node
    // is root's, and attaching to its successor needs the same rights.
    let dir = tempfile::tempdir().unwrap();
    let nobody = support::as_nobody(dir.path(), "cap_bpf,cap_perfmon,cap_sys_ptrace+ep");
    let (probe, mut seen) = follow_from_first_interval_with(old, nobody);
    // Answers given after the first interval began were counted by the old process's probes.
    let before_old = load.answered();
    std::thread::sleep(Duration::from_secs(3));
    let during_old = load.answered() - before_old;
    assert!(during_old > 50, "the RPC load is too light: {during_old}");
    node.restart();
    until(&probe, &mut seen, "target_attached", |v| {
        v["type"] == "target_attached"
    });
    let attached_at = load.answered();
    assert_eq!(u(&seen.last().unwrap()["pid"]), u64::from(node.pid));
    std::thread::sleep(Duration::from_secs(4));
    let during_new = load.answered() - attached_at;
    assert!(
        during_new > 50,
        "the RPC load is too light after the restart: {during_new}"
    );
    probe.signal(libc::SIGINT);
    let (code, rest, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    drop(load);
    seen.extend(
        rest.iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()),
    );
    let gets = |pid: u32| -> u64 {
        seen.iter()
            .filter(|o| o["type"] == "interval" && u(&o["pid"]) == u64::from(pid))
            .map(|o| u(&o["operations"]["GET"]["count"]))
            .sum()
    };
    let (gets_old, gets_new) = (gets(old), gets(node.pid));
    assert!(
        gets_new >= during_new,
        "new process: {gets_new} GETs counted for {during_new} RPC answers"
    );
    assert!(
        gets_old >= during_old,
        "old process: {gets_old} GETs counted for {during_old} RPC answers"
    );
    let s = seen.last().unwrap();
    assert_eq!(s["type"], "summary");
    assert_eq!(u(&s["pid"]), u64::from(node.pid));
    assert_eq!(s["uprobes"], "uprobe_multi", "{s}");
    // The summary covers the new process only: no count of the old one leaks into it. It is
    // read after the last interval, so calls the live node made in between count there too
    // (a handful); a leak would add all of the old process's.
    let summary_gets = u(&s["operations"]["GET"]["count"]);
    assert!(
        summary_gets >= gets_new && summary_gets - gets_new < gets_old,
        "summary {summary_gets} GETs, new process's intervals {gets_new}, old's {gets_old}: {s}"
    );
}
