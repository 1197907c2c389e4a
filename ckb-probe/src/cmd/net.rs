//! `ckb-probe net`: attach the network layer to a CKB node (or any process) and report its
//! TCP peers, connection events and churn alerts every interval. The same layer runs beside
//! the RocksDB layer with `ckb-probe rocksdb --with net`.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;
use ckb_probe::{
    analysis::{
        correlate::Disconnects,
        net::{
            ChurnConfig, ChurnDetector, Classifier, EventRecord, NetAlert, NetInterval,
            Reconnecting, RpcIndex, interval,
        },
    },
    collect::{
        clock::MonoClock,
        net::{NetCollector, NetSnapshot},
    },
    error::InputError,
    node::{self, RpcPeer},
    privileges,
    probe::{
        Engine,
        net::{self as netprobe, NetAttach, NetOptions},
    },
    target::Process,
    view::{self, net::Header},
};
use ckb_probe_common::config::Config;
use serde_json::json;

use super::runner::{self, End, Layer, Piece, RunArgs, Runner, Signals};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    /// The P2P listening port(s): inbound connections to other ports (RPC, metrics) are not
    /// peers. Default: CKB's `[network] listen_addresses`, else every port the target listens on.
    #[arg(long = "listen-port", value_name = "PORT")]
    pub listen_port: Vec<u16>,
    /// Also list connections that are not P2P (clients of the node's RPC and other services).
    #[arg(long)]
    pub all: bool,
    /// Connection events shown under the table.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
    /// Peers shown in the table (JSON lists them all).
    #[arg(long, default_value_t = 30)]
    pub rows: usize,
    /// Seconds before churn alerts may fire.
    #[arg(long, default_value_t = 300.0)]
    pub warmup: f64,
    /// Use the kprobe fallback even where the tracepoints exist (testing).
    #[arg(long, hide = true)]
    pub force_kprobes: bool,
}

/// The node's RPC, asked for `get_peers` now and then (never on every interval: each call is a
/// connection to the node, and a silent RPC costs a timeout).
struct Rpc {
    addr: Option<SocketAddr>,
    peers: Vec<RpcPeer>,
    next: Instant,
    reachable: bool,
}

impl Rpc {
    const REFRESH: Duration = Duration::from_secs(5);
    const RETRY: Duration = Duration::from_secs(30);

    fn refresh(&mut self, now: Instant, new_peer: bool) {
        let Some(addr) = self.addr else { return };
        if now < self.next && !(new_peer && self.reachable) {
            return;
        }
        match node::get_peers(addr) {
            Some(p) => {
                self.peers = p;
                self.reachable = true;
                self.next = now + Self::REFRESH;
            }
            None => {
                self.reachable = false;
                self.next = now + Self::RETRY;
            }
        }
    }
}

/// Connection events: the last 60 s for the table, this interval's for JSON.
struct EventLog {
    recent: VecDeque<EventRecord>,
    fresh: Vec<EventRecord>,
    fresh_dropped: u64,
    /// Every event received (P2P or not), by kind.
    totals: BTreeMap<&'static str, u64>,
}

const RECENT_KEEP: usize = 10_000;
const FRESH_MAX: usize = 100_000;

/// How the layer shows what it sees (flags of `ckb-probe net`, defaults when secondary).
#[derive(Clone, Copy)]
struct Show {
    json: bool,
    all: bool,
    rows: usize,
    events: usize,
}

/// The network layer of one run.
pub struct NetLayer {
    /// Runs beside another layer: its summary says which layer it is.
    secondary: bool,
    show: Show,
    pid: u32,
    node: String,
    collector: NetCollector,
    attach: NetAttach,
    cls: Classifier,
    clock: MonoClock,
    start: Instant,
    first: NetSnapshot,
    prev: NetSnapshot,
    churn: ChurnDetector,
    events: EventLog,
    rpc: Rpc,
    interval: Duration,
    p2p_ports: Option<BTreeSet<u16>>,
    /// Peers seen so far (a new one triggers an RPC refresh for its node id).
    known_peers: usize,
}

impl NetLayer {
    /// Attaches the network layer through `engine` for `process`.
    fn open(
        engine: &mut Engine,
        process: &Process,
        show: Show,
        listen_port: &[u16],
        force_kprobes: bool,
        warmup: Duration,
    ) -> Result<Self> {
        let pid = process.pid;
        let p2p_ports: Option<BTreeSet<u16>> = if !listen_port.is_empty() {
            Some(listen_port.iter().copied().collect())
        } else {
            let from_toml: BTreeSet<u16> = node::p2p_listen_ports(process).into_iter().collect();
            (!from_toml.is_empty()).then_some(from_toml)
        };
        if !force_kprobes {
            match netprobe::ensure_tracefs() {
                Ok(true) => eprintln!("ckb-probe: mounted tracefs at /sys/kernel/tracing"),
                Ok(false) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let mut collector = NetCollector::new(engine)?;
        let mut listen = netprobe::target_listen_ports(pid);
        if let Some(p) = &p2p_ports {
            listen.extend(p);
        }
        collector.add_listen_ports(&listen)?;
        let report = netprobe::attach(engine, NetOptions { force_kprobes })?;
        let start = Instant::now();
        let first = collector.snapshot()?;
        let listen = collector.listen_ports();
        eprintln!(
            "ckb-probe: attached to PID {pid} (network layer via {}: {}); listening ports: {}; P2P ports: {}",
            report.path,
            report.programs.join(", "),
            join_ports(&listen),
            p2p_ports
                .as_ref()
                .map_or("every listening port".into(), join_ports),
        );
        if !report.sock_layout.starts_with("BTF") {
            eprintln!(
                "ckb-probe: note: socket layout from {}: IPv6 peers of connections opened before now may show as unknown",
                report.sock_layout
            );
        }
        Ok(NetLayer {
            secondary: false,
            churn: ChurnDetector::new(
                ChurnConfig {
                    warmup,
                    ..ChurnConfig::default()
                },
                start,
            ),
            rpc: Rpc {
                addr: node::rpc_addr(process),
                peers: Vec::new(),
                next: start,
                reachable: false,
            },
            cls: Classifier {
                listen_ports: listen,
                p2p_ports: p2p_ports.clone(),
            },
            p2p_ports,
            show,
            pid,
            node: String::new(),
            collector,
            attach: report,
            clock: MonoClock::new(),
            start,
            prev: first.clone(),
            first,
            events: EventLog {
                recent: VecDeque::new(),
                fresh: Vec::new(),
                fresh_dropped: 0,
                totals: BTreeMap::new(),
            },
            interval: Duration::from_secs(1),
            known_peers: 0,
        })
    }

    /// Re-reads the target's listening ports (a node may open one after we attached).
    fn refresh_ports(&mut self) {
        let mut ports = netprobe::target_listen_ports(self.pid);
        if let Some(p) = &self.p2p_ports {
            ports.extend(p);
        }
        if let Err(e) = self.collector.add_listen_ports(&ports) {
            tracing::debug!("updating listening ports: {e}");
        }
        self.cls.listen_ports = self.collector.listen_ports();
    }

    fn compute(&self, from: &NetSnapshot, cur: &NetSnapshot) -> NetInterval {
        let index = RpcIndex::new(&self.rpc.peers);
        let rpc = (!self.rpc.peers.is_empty()).then_some(&index);
        interval(from, cur, &self.cls, rpc, self.show.all)
    }

    fn header(&self, uptime: Duration, interval: Duration) -> Header<'_> {
        Header {
            pid: self.pid,
            uptime,
            interval,
            node: &self.node,
            path: self.attach.path,
        }
    }
}

/// The network layer as a secondary layer of another command (`rocksdb --with net`).
pub fn secondary(
    engine: &mut Engine,
    process: &Process,
    json: bool,
    warmup: Duration,
    node: &str,
    (start, interval): (Instant, Duration),
) -> Result<NetLayer> {
    let show = Show {
        json,
        all: false,
        rows: 10,
        events: 5,
    };
    let mut layer = NetLayer::open(engine, process, show, &[], false, warmup)?;
    layer.secondary = true;
    layer.node = node.to_string();
    layer.start = start;
    layer.interval = interval;
    Ok(layer)
}

impl Layer for NetLayer {
    fn name(&self) -> &'static str {
        "net"
    }

    fn poll(&mut self) -> usize {
        let mut batch = Vec::new();
        self.collector.drain_events(|ev| batch.push(ev));
        let n = batch.len();
        for ev in batch {
            let rec = EventRecord::new(&ev, self.clock.wall(ev.ts_ns), &self.cls);
            *self.events.totals.entry(rec.kind).or_default() += 1;
            self.churn.push(&rec);
            if !(rec.p2p || self.show.all) {
                continue;
            }
            if self.events.fresh.len() < FRESH_MAX {
                self.events.fresh.push(rec.clone());
            } else {
                self.events.fresh_dropped += 1;
            }
            if self.events.recent.len() == RECENT_KEEP {
                self.events.recent.pop_front();
            }
            self.events.recent.push_back(rec);
        }
        n
    }

    fn interval(&mut self, now: Instant) -> Result<Piece> {
        let cur = self.collector.snapshot()?;
        self.refresh_ports();
        let new_peer = cur.peers.len() > self.known_peers;
        self.known_peers = cur.peers.len();
        self.rpc.refresh(now, new_peer);
        let iv = self.compute(&self.prev, &cur);
        let wall = SystemTime::now();
        let (alerts, reconnecting): (Vec<NetAlert>, Vec<Reconnecting>) =
            self.churn.evaluate(now, wall);
        let mut piece = Piece::default();
        if self.show.json {
            let m = &mut piece.json;
            m.insert("path".into(), json!(self.attach.path));
            m.insert("peers".into(), json!(iv.peers));
            m.insert("events".into(), json!(self.events.fresh));
            m.insert("events_dropped".into(), json!(self.events.fresh_dropped));
            m.insert("totals".into(), json!(iv.totals));
            m.insert("alerts".into(), json!(alerts));
            m.insert("reconnecting".into(), json!(reconnecting));
            m.insert("rpc".into(), json!(self.rpc.reachable));
            m.insert("lost_events".into(), json!(iv.lost_events));
            m.insert("map_full".into(), json!(iv.map_full));
        } else {
            let header = self.header(now.duration_since(self.start), self.interval);
            let out = &mut piece.text;
            out.push_str(&view::net::table(&header, &iv, self.show.rows));
            let cutoff = wall - Duration::from_secs(60);
            let last60: Vec<&EventRecord> = self
                .events
                .recent
                .iter()
                .filter(|e| e.wall >= cutoff)
                .collect();
            let shown: Vec<EventRecord> = last60
                .iter()
                .rev()
                .take(self.show.events)
                .rev()
                .map(|e| (*e).clone())
                .collect();
            if self.show.events > 0 {
                out.push_str(&view::net::event_log(&shown, last60.len()));
            }
            out.push_str(&view::net::status(
                &alerts,
                &reconnecting,
                self.churn.warmup_left(now),
                iv.lost_events,
                iv.map_full,
            ));
        }
        self.events.fresh.clear();
        self.events.fresh_dropped = 0;
        self.prev = cur;
        piece.signals = Signals {
            net: Some(Disconnects {
                storm: alerts
                    .iter()
                    .find(|a| a.kind == "disconnection_storm")
                    .map(|a| a.count),
                reconnecting: reconnecting.iter().map(|r| r.peer.clone()).collect(),
            }),
            ..Signals::default()
        };
        Ok(piece)
    }

    fn summary(&mut self, _end: End) -> Result<Piece> {
        let cur = self.collector.snapshot()?;
        let total = self.compute(&self.first, &cur);
        let mut piece = Piece::default();
        if self.show.json {
            let m = &mut piece.json;
            m.insert("path".into(), json!(self.attach.path));
            m.insert("programs".into(), json!(self.attach.programs));
            m.insert("sock_layout".into(), json!(self.attach.sock_layout));
            m.insert("listen_ports".into(), json!(self.cls.listen_ports));
            m.insert("p2p_ports".into(), json!(self.p2p_ports));
            m.insert("peers".into(), json!(total.peers));
            m.insert("totals".into(), json!(total.totals));
            m.insert("event_counts".into(), json!(self.events.totals));
            m.insert(
                "max_disconnections_60s".into(),
                json!(self.churn.max_disconnects),
            );
            m.insert("storms".into(), json!(self.churn.storms));
            m.insert(
                "reconnecting_peers".into(),
                json!(self.churn.reconnecting_seen),
            );
            m.insert("lost_events".into(), json!(total.lost_events));
            m.insert("map_full".into(), json!(total.map_full));
        } else {
            let d = Duration::from_secs_f64(total.secs);
            let header = self.header(d, d);
            let out = &mut piece.text;
            out.push_str(&format!(
                "\n{}ummary over {} (rates averaged over the whole run):\n",
                if self.secondary { "Network s" } else { "S" },
                view::hms(d)
            ));
            out.push_str(&view::net::table(&header, &total, self.show.rows));
            let counts: Vec<String> = self
                .events
                .totals
                .iter()
                .map(|(k, n)| format!("{k} {}", view::thousands(*n)))
                .collect();
            let reconnecting: Vec<String> = self.churn.reconnecting_seen.iter().cloned().collect();
            out.push_str(&format!(
                "  Events: {}\n  Most disconnections in 60 s: {}   Storm alerts: {}   Reconnecting peers: {}\n  Lost connection events: {}\n",
                if counts.is_empty() { "none".into() } else { counts.join(", ") },
                self.churn.max_disconnects,
                self.churn.storms,
                if reconnecting.is_empty() { "none".into() } else { reconnecting.join(", ") },
                total.lost_events
            ));
        }
        Ok(piece)
    }
}

fn join_ports(p: &BTreeSet<u16>) -> String {
    if p.is_empty() {
        "none".into()
    } else {
        p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let limits = args.run.limits()?;
    let interval_d = limits.interval;
    let warmup = runner::warmup(args.warmup)?;
    if args.listen_port.contains(&0) {
        return Err(
            InputError::Other("--listen-port must be a TCP port from 1 to 65535".into()).into(),
        );
    }

    let process = runner::target(args.run.pid)?;
    let pid = process.pid;
    let mut engine = Engine::load(Config {
        tgid: pid,
        slow_threshold_ns: u64::MAX,
        ..Config::default()
    })?;
    let show = Show {
        json: args.run.json,
        all: args.all,
        rows: args.rows,
        events: args.events,
    };
    let mut layer = NetLayer::open(
        &mut engine,
        &process,
        show,
        &args.listen_port,
        args.force_kprobes,
        warmup,
    )?;
    layer.node = node::describe(&process);
    layer.interval = interval_d;
    // Only reading the target's /proc/PID/fd for new listening sockets still needs privilege.
    if let Err(e) = privileges::drop_all_but(&[privileges::CAP_SYS_PTRACE]) {
        tracing::warn!("could not drop capabilities: {e}");
    }
    let (start, node) = (layer.start, layer.node.clone());
    let end = Runner::new(pid, node, start, limits, vec![Box::new(layer)], None).run()?;
    drop(engine);
    runner::said_goodbye(end, pid);
    Ok(ExitCode::SUCCESS)
}
