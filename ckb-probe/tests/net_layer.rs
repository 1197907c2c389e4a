//! The network layer against real sockets: a loopback workload with exact ground truth
//! (ckb-probe-netbed) over IPv4 and IPv6, a real CKB node with a second node as its peer, the
//! kprobe fallback refused cleanly on this kernel, clean detach on SIGINT, and bad input.
//! Needs root; run with `--test-threads=1` (probes are global state).

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{ckb_node::CkbNode, *};

/// A running netbed waiting for its start file; killed on drop if still running.
struct Netbed {
    child: Child,
    pid: u32,
    port4: u16,
    port6: u16,
    dir: tempfile::TempDir,
}

impl Netbed {
    fn spawn(args: &[String]) -> Netbed {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(testbed_bin("ckb-probe-netbed"))
            .args(args)
            .arg("--start-file")
            .arg(dir.path().join("start"))
            .arg("--output")
            .arg(dir.path().join("truth.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn netbed");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines
            .next()
            .expect("netbed exited before READY")
            .expect("read netbed stdout");
        let field = |k: &str| -> u32 {
            ready
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} missing in {ready}"))
        };
        let (pid, port4, port6) = (
            field("pid="),
            field("port4=") as u16,
            field("port6=") as u16,
        );
        thread::spawn(move || for _ in lines {});
        Netbed {
            child,
            pid,
            port4,
            port6,
            dir,
        }
    }

    fn start(&self) {
        std::fs::write(self.dir.path().join("start"), b"go").expect("start file");
    }

    fn finish(mut self) -> Value {
        let st = self.child.wait().expect("wait netbed");
        assert!(st.success(), "netbed failed: {st}");
        let text = std::fs::read_to_string(self.dir.path().join("truth.json")).expect("truth");
        serde_json::from_str(&text).expect("truth json")
    }
}

impl Drop for Netbed {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_to_eof(s: &mut TcpStream) -> u64 {
    let mut buf = [0u8; 65_536];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k as u64,
        }
    }
}

/// A server in the test process speaking the netbed protocol: read to EOF, reply, close.
/// Its sockets belong to the test, so none of them may show up in the target's peers.
fn outside_server(addr: &str, reply: usize) -> SocketAddr {
    let l = TcpListener::bind(addr).expect("bind outside server");
    let a = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                read_to_eof(&mut s);
                let _ = s.write_all(&vec![1u8; reply]);
            });
        }
    });
    a
}

/// A client in the test process: connects to the target, sends `n` bytes, reads the reply.
fn outside_client(addr: SocketAddr, n: usize) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect to netbed");
    s.write_all(&vec![2u8; n]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    read_to_eof(&mut s)
}

type Key = (String, u16);

/// Sums the truth's connections by remote endpoint: (count, sent, received).
fn by_endpoint(conns: &Value) -> BTreeMap<Key, (u64, u64, u64)> {
    let mut m: BTreeMap<Key, (u64, u64, u64)> = BTreeMap::new();
    for c in conns.as_array().expect("array") {
        let e = m
            .entry((
                c["remote"].as_str().unwrap().to_string(),
                c["port"].as_u64().unwrap() as u16,
            ))
            .or_default();
        e.0 += 1;
        e.1 += u(&c["sent"]);
        e.2 += u(&c["received"]);
    }
    m
}

/// Every connection, every byte, both families: the probe's per-peer rows and totals equal
/// what the target's own system calls returned, and the test process's own sockets (a server
/// the target connects to, clients that connect to the target) are not attributed to it.
#[test]
fn loopback_ipv4_ipv6_exact_per_peer() {
    const CONNS: u32 = 5;
    const SEND: u64 = 123_457;
    const REPLY: u64 = 7_777;
    let srv4 = outside_server("127.0.0.1:0", 3_000);
    let srv6 = outside_server("[::1]:0", 3_000);
    let nb = Netbed::spawn(&[
        "--conns".into(),
        CONNS.to_string(),
        "--send".into(),
        SEND.to_string(),
        "--reply".into(),
        REPLY.to_string(),
        "--connect".into(),
        srv4.to_string(),
        "--connect".into(),
        srv6.to_string(),
        "--expect-inbound".into(),
        "4".into(),
        "--linger".into(),
        "1".into(),
    ]);
    let pid = nb.pid.to_string();
    let probe = Probe::start(&[
        "net",
        "--pid",
        &pid,
        "--json",
        "--interval",
        "0.5",
        "--warmup",
        "0",
    ]);
    let (p4, p6) = (nb.port4, nb.port6);
    nb.start();
    // Outside clients (the test process) connecting to the target's listeners.
    let mut replies = 0;
    for (i, port) in [p4, p4, p6, p6].into_iter().enumerate() {
        let addr: SocketAddr = if i < 2 {
            ([127, 0, 0, 1], port).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, port).into()
        };
        replies += outside_client(addr, 4_000 + i);
    }
    assert_eq!(replies, 4 * REPLY);
    let truth = nb.finish();
    let (code, lines, stderr) = probe.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "ckb-probe failed: {stderr}");
    assert!(
        stderr.contains("exited"),
        "no target-exit message: {stderr}"
    );
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    assert_eq!(s["path"], "tracepoints");
    assert_eq!(s["end"], "target_exited");

    let out = by_endpoint(&truth["outbound"]);
    let inb = by_endpoint(&truth["inbound"]);
    // Own listeners: CONNS per family, plus one to each outside server.
    assert_eq!(out[&("127.0.0.1".to_string(), p4)].0, CONNS as u64);
    assert_eq!(out[&("::1".to_string(), p6)].0, CONNS as u64);
    assert_eq!(inb.len(), 2 * CONNS as usize + 4);

    let peers: BTreeMap<Key, &Value> = s["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                (
                    p["remote"].as_str().unwrap().to_string(),
                    p["port"].as_u64().unwrap() as u16,
                ),
                p,
            )
        })
        .collect();
    for (side, truth_side, dir, count_field) in [
        ("outbound", &out, "outbound", "connects"),
        ("inbound", &inb, "inbound", "accepts"),
    ] {
        for (k, &(n, sent, received)) in truth_side {
            let p = peers
                .get(k)
                .unwrap_or_else(|| panic!("{side} peer {k:?} missing; peers: {:?}", peers.keys()));
            let ctx = format!("{side} peer {k:?}: {p}");
            assert_eq!(p["direction"], dir, "{ctx}");
            assert_eq!(u(&p[count_field]), n, "{ctx}");
            assert_eq!(u(&p["bytes_sent"]), sent, "{ctx}");
            assert_eq!(u(&p["bytes_received"]), received, "{ctx}");
            assert_eq!(u(&p["closes"]), n, "{ctx}");
            assert_eq!(u(&p["disconnects"]), n, "{ctx}");
            assert_eq!(u(&p["open"]), 0, "{ctx}");
            assert_eq!(u(&p["adopted"]), 0, "{ctx}");
            assert_eq!(p["state"], "closed", "{ctx}");
            let fam = if k.0.contains(':') { "ipv6" } else { "ipv4" };
            assert_eq!(p["family"], fam, "{ctx}");
        }
    }
    // Nothing else: the outside server's and clients' own sockets are not the target's.
    assert_eq!(
        peers.len(),
        out.len() + inb.len(),
        "unexpected peers: {:?}",
        peers.keys()
    );

    let sum = |m: &BTreeMap<Key, (u64, u64, u64)>, f: fn(&(u64, u64, u64)) -> u64| -> u64 {
        m.values().map(f).sum()
    };
    let t = &s["totals"];
    let n_out = sum(&out, |v| v.0);
    let n_in = sum(&inb, |v| v.0);
    assert_eq!(u(&t["connects"]), n_out);
    assert_eq!(u(&t["accepts"]), n_in);
    assert_eq!(u(&t["closes"]), n_out + n_in);
    assert_eq!(u(&t["disconnects"]), n_out + n_in);
    assert_eq!(u(&t["adopted"]), 0);
    assert_eq!(u(&t["bytes_sent"]), sum(&out, |v| v.1) + sum(&inb, |v| v.1));
    assert_eq!(
        u(&t["bytes_received"]),
        sum(&out, |v| v.2) + sum(&inb, |v| v.2)
    );
    assert_eq!(u(&t["retransmits"]), 0, "retransmits on loopback");
    assert_eq!(u(&s["lost_events"]), 0);
    assert_eq!(u(&s["map_full"]), 0);
    let ev = &s["event_counts"];
    assert_eq!(u(&ev["connect"]), n_out, "{ev}");
    assert_eq!(u(&ev["established"]), n_out, "{ev}");
    assert_eq!(u(&ev["accept"]), n_in, "{ev}");
    assert_eq!(u(&ev["close"]), n_out + n_in, "{ev}");
    assert!(ev["adopt"].is_null(), "{ev}");
    eprintln!(
        "{n_out} outbound + {n_in} inbound connections, {} B sent, {} B received: exact",
        u(&t["bytes_sent"]),
        u(&t["bytes_received"])
    );

    // The interval lines: documented fields, and the event log adds up to the same counts.
    let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
    let intervals: Vec<&Value> = objs.iter().filter(|o| o["type"] == "interval").collect();
    assert!(intervals.len() >= 2, "{} intervals", intervals.len());
    for o in &intervals {
        for k in [
            "timestamp",
            "pid",
            "uptime_secs",
            "interval_secs",
            "peers",
            "events",
            "totals",
            "alerts",
            "lost_events",
        ] {
            assert!(!o[k].is_null(), "missing {k}: {o}");
        }
        for p in o["peers"].as_array().unwrap() {
            for k in [
                "remote",
                "port",
                "family",
                "direction",
                "bytes_sent",
                "bytes_received",
                "send_bytes_per_sec",
                "recv_bytes_per_sec",
                "retransmits",
                "state",
            ] {
                assert!(!p[k].is_null(), "peer missing {k}: {p}");
            }
            assert!(p.get("node_id").is_some() && p.get("version").is_some());
            assert!(p.get("age_secs").is_some());
        }
        for e in o["events"].as_array().unwrap() {
            for k in ["time", "kind", "remote", "port", "local_port"] {
                assert!(!e[k].is_null(), "event missing {k}: {e}");
            }
            *per_kind
                .entry(e["kind"].as_str().unwrap().into())
                .or_default() += 1;
            if e["kind"] == "close" {
                assert!(
                    e["age_secs"].is_number(),
                    "established connection closes have an age: {e}"
                );
            }
        }
    }
    assert_eq!(per_kind.get("accept").copied().unwrap_or(0), n_in);
    assert_eq!(per_kind.get("connect").copied().unwrap_or(0), n_out);
    assert_eq!(per_kind.get("close").copied().unwrap_or(0), n_out + n_in);

    // 26 disconnections within seconds: a storm (more than 10 in 60 s); the target's repeated
    // connections to its own listeners make those endpoints reconnecting peers.
    let alerts: Vec<&Value> = intervals
        .iter()
        .flat_map(|o| o["alerts"].as_array().unwrap().iter())
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a["type"] == "disconnection_storm" && u(&a["count"]) > 10),
        "no storm alert: {alerts:?}"
    );
    assert!(u(&s["storms"]) >= 1);
    assert_eq!(u(&s["max_disconnections_60s"]), n_out + n_in);
    let reconnecting: Vec<&str> = s["reconnecting_peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [format!("127.0.0.1:{p4}"), format!("[::1]:{p6}")] {
        assert!(
            reconnecting.contains(&want.as_str()),
            "{want} not in {reconnecting:?}"
        );
    }
}

/// The feature detection picks the tracepoint path here, and the kprobe fallback, when
/// forced, loads (its programs pass the verifier), then refuses cleanly: exit 1, a message
/// naming the missing kprobes, nothing left loaded.
#[test]
fn kprobe_fallback_is_refused_cleanly_without_kprobes() {
    let path = ckb_probe::probe::net::detect_path();
    assert_eq!(path.name(), "tracepoints", "{path:?}");
    let kprobes = ckb_probe::probe::net::kprobes_available();
    assert!(
        kprobes.is_err(),
        "this test documents a kernel without kprobes"
    );

    let nb = Netbed::spawn(&["--linger".into(), "30".into()]);
    let pid = nb.pid.to_string();
    let before = loaded_prog_names()
        .iter()
        .filter(|n| n.starts_with("net_"))
        .count();
    let out = Command::new(ckb_probe())
        .args(["net", "--pid", &pid, "--force-kprobes", "--json"])
        .output()
        .expect("run ckb-probe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("ckb-probe: error:"), "{err}");
    assert!(err.contains("no kprobes"), "{err}");
    assert!(err.contains("passed the verifier"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "no output expected");
    // Other instances may run on this machine: the number of network programs loaded is what it
    // was before this run (the failed attach released its own).
    let after = || {
        loaded_prog_names()
            .iter()
            .filter(|n| n.starts_with("net_"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while after() > before && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        after() <= before,
        "leftover programs: {:?}",
        loaded_prog_names()
    );
}

/// SIGINT ends a run cleanly: exit 0, a summary, and none of the net programs stay loaded.
#[test]
fn sigint_detaches_everything() {
    let nb = Netbed::spawn(&["--conns".into(), "2".into(), "--linger".into(), "30".into()]);
    let pid = nb.pid.to_string();
    let probe = Probe::start(&[
        "net",
        "--pid",
        &pid,
        "--json",
        "--interval",
        "0.5",
        "--warmup",
        "0",
    ]);
    nb.start();
    assert!(
        probe.line(Duration::from_secs(5)).is_some(),
        "no interval output"
    );
    // Its 8 disconnections are not a storm.
    thread::sleep(Duration::from_secs(2));
    let during = loaded_prog_names();
    for p in ["net_set_state", "net_send_len", "net_recv_len"] {
        assert!(during.iter().any(|n| n == p), "{p} not loaded: {during:?}");
    }
    let ids = prog_ids_of(probe.child.id());
    assert!(!ids.is_empty(), "no programs held");
    probe.signal(libc::SIGINT);
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    assert_eq!(s["end"], "signal");
    assert_eq!(u(&s["totals"]["disconnects"]), 8, "{s}");
    assert_eq!(u(&s["storms"]), 0, "false storm alert: {s}");
    assert_all_gone(&ids, "after SIGINT");
}

#[test]
fn bad_input_exits_2() {
    for args in [
        vec!["net", "--pid", "999999999"],
        vec!["net", "--pid", "1", "--interval", "0"],
        vec!["net", "--pid", "1", "--duration", "-1"],
        vec!["net", "--pid", "1", "--count", "0"],
        vec!["net", "--pid", "1", "--listen-port", "0"],
        vec!["net", "--pid", "1", "--listen-port", "70000"],
    ] {
        let out = Command::new(ckb_probe()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

// ---------------------------------------------------------------- real CKB

/// A second CKB node with the first as its bootnode; stopped on drop, even on failure.
struct CkbPeer {
    dir: PathBuf,
    pid: u32,
    rpc_port: u16,
}

impl CkbPeer {
    /// The peer must run the same dev chain: `ckb init` writes a fresh genesis message per
    /// directory, so the node's spec is copied in before `ckb-node.sh peer` reuses the dir.
    fn start(node: &CkbNode) -> CkbPeer {
        let dir = node.dir.with_file_name("peer");
        let (peer_rpc, peer_p2p) = (ckb_node::free_port(), ckb_node::free_port());
        let ckb = std::env::var("CKB_BIN").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.cargo/bin/ckb")
        });
        let st = Command::new(&ckb)
            .args(["init", "-C"])
            .arg(&dir)
            .args([
                "--chain",
                "dev",
                "--ba-arg",
                "0xc8328aabcd9b9e8e64fbc566c4385c3bdeb219d7",
                "--ba-message",
                "0x",
                "--rpc-port",
                &peer_rpc.to_string(),
                "--p2p-port",
                &peer_p2p.to_string(),
            ])
            .stdout(Stdio::null())
            .status()
            .expect("ckb init");
        assert!(st.success(), "ckb init of the peer failed");
        std::fs::copy(node.dir.join("specs/dev.toml"), dir.join("specs/dev.toml"))
            .expect("copy dev spec");
        let out = Command::new(workspace_root().join("scripts/ckb-node.sh"))
            .arg("peer")
            .arg(&node.dir)
            .arg(&dir)
            .env("CKB_PEER_RPC_PORT", peer_rpc.to_string())
            .env("CKB_PEER_P2P_PORT", peer_p2p.to_string())
            .output()
            .expect("ckb-node.sh peer");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "ckb-node.sh peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = stdout
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("CKB_PEER_PID="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no CKB_PEER_PID in {stdout}"));
        CkbPeer {
            dir,
            pid,
            rpc_port: peer_rpc,
        }
    }
}

impl Drop for CkbPeer {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/ckb-node.sh"))
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn rpc(port: u16, method: &str) -> Value {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    ckb_probe::node::call(addr, method, serde_json::json!([])).unwrap_or(Value::Null)
}

/// `bytes_acked` of the node's established P2P socket(s) (what TCP delivered from the node).
fn ss_acked(local_port: u16) -> u64 {
    let out = Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            &format!("( sport = :{local_port} )"),
        ])
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_acked:"))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

fn next_interval(probe: &Probe, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(l) = probe.line(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&l).expect("NDJSON");
            if v["type"] == "interval" {
                return v;
            }
        }
    }
    panic!("no interval line within {timeout:?}");
}

/// A real CKB dev node with a second node as its peer: the peer shows up (identified through
/// the node's `get_peers`) with growing bytes, the bytes the node sent it while the probe
/// watched equal what TCP acknowledged (node frozen around the window), and killing the peer
/// produces its close event.
#[test]
fn real_ckb_peer_bytes_and_disconnect() {
    let node = CkbNode::start();
    let node_p2p = node.p2p_port;
    let peer = CkbPeer::start(&node);
    let peer_id = rpc(peer.rpc_port, "local_node_info")["node_id"]
        .as_str()
        .expect("peer node_id")
        .to_string();
    let pid = node.pid.to_string();

    // Frozen while attaching, so the byte window is exact.
    node.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_millis(300));
    let acked0 = ss_acked(node_p2p);
    let probe = Probe::start(&["net", "--pid", &pid, "--json", "--interval", "1"]);
    node.signal(libc::SIGCONT);

    let find = |o: &Value| -> Option<Value> {
        o["peers"]
            .as_array()?
            .iter()
            .find(|p| p["node_id"] == peer_id.as_str())
            .cloned()
    };
    let mut sent_series = Vec::new();
    let mut row = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    while sent_series.len() < 6 && Instant::now() < deadline {
        let o = next_interval(&probe, Duration::from_secs(5));
        if let Some(p) = find(&o) {
            sent_series.push(u(&p["bytes_sent"]));
            row = Some(p);
        }
    }
    let row = row.unwrap_or_else(|| panic!("peer {peer_id} never listed"));
    eprintln!("peer row: {row}");
    eprintln!("bytes sent to the peer, per interval: {sent_series:?}");
    assert_eq!(row["direction"], "inbound", "the peer dialed the node");
    assert_eq!(row["remote"], "127.0.0.1");
    assert!(
        row["version"].as_str().unwrap_or("").contains("0.210"),
        "{row}"
    );
    assert!(
        sent_series.windows(2).any(|w| w[1] > w[0]) && sent_series.windows(2).all(|w| w[1] >= w[0]),
        "bytes to the peer should grow: {sent_series:?}"
    );

    // Exact window: freeze, let TCP drain, compare with the kernel's own socket counter.
    node.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_millis(500));
    let acked1 = ss_acked(node_p2p);
    let o = next_interval(&probe, Duration::from_secs(5));
    let o = if find(&o).is_some() {
        o
    } else {
        next_interval(&probe, Duration::from_secs(5))
    };
    let sent = u(&find(&o).expect("peer row")["bytes_sent"]);
    eprintln!(
        "node→peer: probe {sent} B, TCP bytes_acked delta {} B",
        acked1 - acked0
    );
    assert_eq!(
        sent,
        acked1 - acked0,
        "bytes sent to the peer vs TCP's count"
    );
    node.signal(libc::SIGCONT);

    // Kill the peer: the node's socket to it closes.
    let port = row["port"].as_u64().unwrap();
    // SAFETY: kill(2) on the peer node we started.
    unsafe { libc::kill(peer.pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let close = loop {
        assert!(
            Instant::now() < deadline,
            "no close event for the killed peer"
        );
        let o = next_interval(&probe, Duration::from_secs(5));
        if let Some(e) = o["events"].as_array().and_then(|ev| {
            ev.iter()
                .find(|e| e["kind"] == "close" && e["remote"] == "127.0.0.1" && e["port"] == port)
                .cloned()
        }) {
            break e;
        }
    };
    eprintln!("close event: {close}");
    assert!(close["age_secs"].as_f64().unwrap_or(0.0) > 0.0, "{close}");
    assert_eq!(close["local_port"], node_p2p);

    probe.signal(libc::SIGINT);
    let (code, lines, stderr) = probe.wait(Duration::from_secs(15));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    assert!(u(&s["event_counts"]["close"]) >= 1);
    assert_eq!(u(&s["lost_events"]), 0);
    assert_eq!(s["p2p_ports"], serde_json::json!([node_p2p]));
    drop(peer);
    drop(node);
}
