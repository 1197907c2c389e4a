//! What ckb-probe costs a real CKB node (0.210.0 dev chain, loopback only, free ports). Prints
//! Markdown that BENCHMARKS.md takes as is:
//!   cargo bench -p ckb-probe --bench node [-- p1|p4]
//! - P-1: the node's CPU while it mines (Dummy miner, ~3 blocks/s), without and with
//!   `ckb-probe rocksdb --with syscall,net`, alternating, NODE_REPS times NODE_SECS seconds.
//! - P-4: a second node's initial block download of NODE_BLOCKS blocks from the first, without
//!   and with all layers attached to the syncing node, alternating, NODE_REPS times: sync time
//!   and the syncing node's CPU time, and their ratios.
//!
//! Environment: NODE_REPS (default 3), NODE_SECS (default 20), NODE_BLOCKS (default 10000),
//! CKB_BIN (default ~/.cargo/bin/ckb). Needs `scripts/ckb-node.sh install`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ckb_probe::node;
use serde_json::{Value, json};
use support::{
    Probe,
    bench::{cpu_over, env_u64, median, range, sections},
    ckb_node::{CkbNode, free_port},
    parse_ndjson, summary, u,
};

/// All layers, the heaviest configuration an operator runs.
const ALL_LAYERS: [&str; 2] = ["--with", "syscall,net"];

fn ckb_bin() -> Option<PathBuf> {
    std::env::var_os("CKB_BIN")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/ckb")))
        .filter(|p| p.exists())
}

fn spread(v: &[f64], digits: usize) -> String {
    let (lo, hi) = range(v);
    format!("{lo:.digits$}..{hi:.digits$}")
}

fn rpc_addr(rpc: &str) -> SocketAddr {
    rpc.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("rpc address")
}

fn hex(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

fn tip(addr: SocketAddr) -> Option<u64> {
    hex(&node::call(addr, "get_tip_block_number", json!([]))?)
}

/// `ckb-probe rocksdb --pid PID --json` plus `extra`, until SIGINT; returns (RocksDB calls
/// counted, events lost by any layer).
fn stop_probe(probe: Probe) -> (u64, u64) {
    probe.signal(libc::SIGINT);
    let (code, lines, stderr) = probe.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "ckb-probe failed: {stderr}");
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    let calls = s["operations"]
        .as_object()
        .map_or(0, |o| o.values().map(|r| u(&r["count"])).sum());
    (calls, u(&s["lost_events"]) + u(&s["net"]["lost_events"]))
}

fn p1(node: &CkbNode, reps: u64, secs: u64) {
    println!(
        "### P-1: the node's CPU while mining\n\nCKB 0.210.0 dev chain, Dummy miner (~3 blocks/s), node CPU from /proc over {secs} s windows, without and with `ckb-probe rocksdb --with syscall,net` attached, alternating, {reps} repetitions.\n"
    );
    let pid = node.pid.to_string();
    let (mut without, mut with, mut own) = (Vec::new(), Vec::new(), Vec::new());
    let (mut counted, mut lost) = (0, 0);
    for rep in 0..reps {
        eprintln!("[node] P-1 repetition {}/{reps}", rep + 1);
        without.push(cpu_over(node.pid, secs));
        let mut args = vec!["rocksdb", "--pid", &pid, "--json"];
        args.extend_from_slice(&ALL_LAYERS);
        let probe = Probe::start(&args);
        let probe_pid = probe.child.id();
        std::thread::sleep(Duration::from_secs(1));
        let (p0, _) = support::proc_usage(probe_pid).unwrap_or((0.0, 0));
        let t0 = Instant::now();
        with.push(cpu_over(node.pid, secs));
        let (p1, _) = support::proc_usage(probe_pid).unwrap_or((p0, 0));
        own.push(100.0 * (p1 - p0) / t0.elapsed().as_secs_f64());
        let (c, l) = stop_probe(probe);
        counted += c;
        lost += l;
    }
    let (w, x) = (median(&without), median(&with));
    println!("| | node CPU (% of one core), median | spread |");
    println!("|---|---:|---:|");
    println!("| without ckb-probe | {w:.1} % | {} |", spread(&without, 1));
    println!("| with all layers | {x:.1} % | {} |", spread(&with, 1));
    println!(
        "| difference | {:+.1} points ({:+.1} % of the node's own CPU) | goal: < 3 % |",
        x - w,
        100.0 * (x - w) / w
    );
    println!(
        "| ckb-probe itself | {:.2} % | {} |\n",
        median(&own),
        spread(&own, 2)
    );
    println!(
        "ckb-probe counted {counted} RocksDB calls in the traced windows; {lost} events lost.\n"
    );
}

/// A node initialised on the source's chain, not connected to it until [`Peer::connect`].
struct Peer {
    child: Child,
    rpc: SocketAddr,
    _tmp: tempfile::TempDir,
}

impl Peer {
    fn start(ckb: &PathBuf, source: &CkbNode) -> Peer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("peer");
        let (rpc_port, p2p_port) = (free_port(), free_port());
        let out = Command::new(support::workspace_root().join("scripts/ckb-node.sh"))
            .arg("init-peer")
            .arg(&source.dir)
            .arg(&dir)
            .env("CKB_PEER_RPC_PORT", rpc_port.to_string())
            .env("CKB_PEER_P2P_PORT", p2p_port.to_string())
            .env("CKB_BIN", ckb)
            .output()
            .expect("ckb-node.sh init-peer");
        assert!(
            out.status.success(),
            "init-peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(tmp.path().join("run.log")).expect("log");
        let child = Command::new(ckb)
            .arg("run")
            .arg("-C")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("ckb run");
        let rpc: SocketAddr = format!("127.0.0.1:{rpc_port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(120);
        while tip(rpc).is_none() {
            assert!(
                Instant::now() < deadline,
                "the syncing node's RPC did not answer"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Peer {
            child,
            rpc,
            _tmp: tmp,
        }
    }

    fn connect(&self, node_id: &str, p2p_port: u16) {
        let addr = format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{node_id}");
        node::call(self.rpc, "add_node", json!([node_id, addr])).expect("add_node");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the node we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Mines `blocks` more blocks on the source at once (the IntegrationTest RPC), its miner stopped
/// so that the target of the download stays put.
fn grow_chain(node: &CkbNode, blocks: u64) -> u64 {
    if let Ok(pid) = std::fs::read_to_string(node.dir.join("miner.pid"))
        && let Ok(pid) = pid.trim().parse::<i32>()
    {
        // SAFETY: kill(2) on the miner the node script started for us.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let addr = rpc_addr(&node.rpc);
    let want = tip(addr).expect("source tip") + blocks;
    let deadline = Instant::now() + Duration::from_secs(600);
    while tip(addr).unwrap_or(0) < want {
        assert!(
            Instant::now() < deadline,
            "could not mine {blocks} blocks in 10 min"
        );
        // A dev-chain epoch is about 10 blocks: 20 at a time keep each call well inside the
        // library's RPC timeout (a reply that comes too late is only checked by the tip).
        let _ = node::call(addr, "generate_epochs", json!(["0x14"]));
    }
    std::thread::sleep(Duration::from_secs(1));
    tip(addr).expect("source tip")
}

struct Sync {
    secs: f64,
    cpu: f64,
    probe: Option<(u64, u64)>,
}

fn sync_once(ckb: &PathBuf, source: &CkbNode, node_id: &str, target: u64, probed: bool) -> Sync {
    let peer = Peer::start(ckb, source);
    let pid = peer.child.id();
    let probe = probed.then(|| {
        let pid = pid.to_string();
        let mut args = vec!["rocksdb", "--pid", &pid, "--json"];
        args.extend_from_slice(&ALL_LAYERS);
        Probe::start(&args)
    });
    let (c0, _) = support::proc_usage(pid).unwrap_or((0.0, 0));
    let t0 = Instant::now();
    peer.connect(node_id, source.p2p_port);
    let deadline = t0 + Duration::from_secs(1800);
    while tip(peer.rpc).unwrap_or(0) < target {
        assert!(Instant::now() < deadline, "sync did not finish in 30 min");
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (c1, _) = support::proc_usage(pid).unwrap_or((c0, 0));
    Sync {
        secs,
        cpu: c1 - c0,
        probe: probe.map(stop_probe),
    }
}

fn p4(ckb: &PathBuf, source: &CkbNode, reps: u64, blocks: u64) {
    let target = grow_chain(source, blocks);
    let node_id = node::call(rpc_addr(&source.rpc), "local_node_info", json!([]))
        .and_then(|v| v["node_id"].as_str().map(str::to_string))
        .expect("node_id");
    println!(
        "### P-4: initial block download\n\nA second CKB 0.210.0 node, started empty on loopback, connected to the first with `add_node` and timed until its tip reaches {target} (the first node's tip; {blocks} blocks made at once with the IntegrationTest `generate_epochs` RPC, so blocks hold only their cellbase). Without and with `ckb-probe rocksdb --with syscall,net` attached to the syncing node before it connects, alternating, {reps} repetitions; sync time (wall) and the syncing node's CPU time over it.\n"
    );
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for probed in [rep % 2 == 1, rep % 2 == 0] {
            eprintln!(
                "[node] P-4 repetition {}/{reps}, {}",
                rep + 1,
                if probed { "with ckb-probe" } else { "without" }
            );
            let s = sync_once(ckb, source, &node_id, target, probed);
            if probed { &mut with } else { &mut without }.push(s);
        }
    }
    let col = |v: &[Sync], f: fn(&Sync) -> f64| v.iter().map(f).collect::<Vec<_>>();
    let (ws, xs) = (col(&without, |s| s.secs), col(&with, |s| s.secs));
    let (wc, xc) = (col(&without, |s| s.cpu), col(&with, |s| s.cpu));
    println!(
        "| | sync time, median | spread | blocks/s | syncing node's CPU time, median | spread |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, t, c) in [
        ("without ckb-probe", &ws, &wc),
        ("with all layers", &xs, &xc),
    ] {
        println!(
            "| {label} | {:.1} s | {} | {:.0} | {:.1} s | {} |",
            median(t),
            spread(t, 1),
            (target as f64) / median(t),
            median(c),
            spread(c, 1)
        );
    }
    let ratios: Vec<f64> = xs.iter().zip(&ws).map(|(x, w)| x / w).collect();
    println!(
        "| ratio with / without | {:.3} | per pair {} | | {:.3} | |\n",
        median(&xs) / median(&ws),
        spread(&ratios, 3),
        median(&xc) / median(&wc)
    );
    let counted: Vec<String> = with
        .iter()
        .filter_map(|s| s.probe.map(|(c, l)| format!("{c} RocksDB calls, {l} lost")))
        .collect();
    println!(
        "ckb-probe per synced run: {}. Goal: ratio < 1.01.\n",
        counted.join("; ")
    );
}

fn main() {
    let Some(run) = sections() else {
        return;
    };
    let Some(ckb) = ckb_bin() else {
        println!("Real CKB node: skipped (no ckb binary; run scripts/ckb-node.sh install)");
        return;
    };
    println!("{}\n", support::bench::machine());
    let reps = env_u64("NODE_REPS", 3);
    let t0 = Instant::now();
    let node = CkbNode::start();
    std::thread::sleep(Duration::from_secs(5));
    if run("p1") {
        p1(&node, reps, env_u64("NODE_SECS", 20));
    }
    if run("p4") {
        p4(&ckb, &node, reps, env_u64("NODE_BLOCKS", 10_000));
    }
    eprintln!("[node] done in {:.0} s", t0.elapsed().as_secs_f64());
}
