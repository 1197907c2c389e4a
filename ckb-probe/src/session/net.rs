//! The network layer of a run: its collector, connection-event log, churn detector and the
//! node's RPC for peer identities.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;

use crate::{
    analysis::{
        correlate::Disconnects,
        net::{
            ChurnConfig, ChurnDetector, Classifier, EventRecord, NetInterval, RpcIndex, interval,
        },
    },
    collect::{
        clock::MonoClock,
        net::{NetCollector, NetSnapshot},
    },
    model::{NetSection, net::NetRun},
    node::{self, RpcPeer},
    probe::{
        Engine,
        net::{self as netprobe, NetAttach},
    },
    target::Process,
};

/// Network options of a run.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// The P2P listening ports; empty: CKB's `[network] listen_addresses`, else every port the
    /// target listens on.
    pub listen_ports: Vec<u16>,
    /// Report connections that are not P2P too (clients of the RPC and other services).
    pub all: bool,
    /// Use the kprobe fallback even where the tracepoints exist (testing).
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

const RECENT_KEEP: usize = 10_000;
const FRESH_MAX: usize = 100_000;
/// Recent connection events a report carries.
const RECENT_IN_REPORT: usize = 50;

/// Connection events: the last 60 s, this interval's, and totals by kind.
#[derive(Default)]
struct EventLog {
    recent: VecDeque<EventRecord>,
    fresh: Vec<EventRecord>,
    fresh_dropped: u64,
    totals: BTreeMap<&'static str, u64>,
}

pub struct NetLayer {
    all: bool,
    pid: u32,
    collector: NetCollector,
    attach: NetAttach,
    cls: Classifier,
    clock: MonoClock,
    first: NetSnapshot,
    prev: NetSnapshot,
    churn: ChurnDetector,
    events: EventLog,
    rpc: Rpc,
    p2p_ports: Option<BTreeSet<u16>>,
    /// Peers seen so far (a new one triggers an RPC refresh for its node id).
    known_peers: usize,
}

fn join_ports(p: &BTreeSet<u16>) -> String {
    if p.is_empty() {
        "none".into()
    } else {
        p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl NetLayer {
    /// Attaches the network layer through `engine` for `process`.
    pub fn open(
        engine: &mut Engine,
        process: &Process,
        opts: &NetOptions,
        warmup: Duration,
        notes: &mut Vec<String>,
    ) -> Result<Self> {
        let pid = process.pid;
        let p2p_ports: Option<BTreeSet<u16>> = if !opts.listen_ports.is_empty() {
            Some(opts.listen_ports.iter().copied().collect())
        } else {
            let from_toml: BTreeSet<u16> = node::p2p_listen_ports(process).into_iter().collect();
            (!from_toml.is_empty()).then_some(from_toml)
        };
        if !opts.force_kprobes {
            match netprobe::ensure_tracefs() {
                Ok(true) => notes.push("mounted tracefs at /sys/kernel/tracing".into()),
                Ok(false) => {}
                // Not an error yet: the kprobe path may serve instead; if nothing does, the
                // attach error says tracefs is missing and how to mount it.
                Err(e) => notes.push(format!("note: {e}")),
            }
        }
        let mut collector = NetCollector::new(engine)?;
        let mut listen = netprobe::target_listen_ports(pid);
        if let Some(p) = &p2p_ports {
            listen.extend(p);
        }
        collector.add_listen_ports(&listen)?;
        let report = netprobe::attach(
            engine,
            netprobe::NetOptions {
                force_kprobes: opts.force_kprobes,
            },
        )?;
        let start = Instant::now();
        let first = collector.snapshot()?;
        let listen = collector.listen_ports();
        notes.push(format!(
            "attached to PID {pid} (network layer via {}: {}); listening ports: {}; P2P ports: {}",
            report.path,
            report.programs.join(", "),
            join_ports(&listen),
            p2p_ports
                .as_ref()
                .map_or("every listening port".into(), join_ports),
        ));
        if !report.sock_layout.starts_with("BTF") {
            notes.push(format!(
                "note: socket layout from {}: IPv6 peers of connections opened before now may show as unknown",
                report.sock_layout
            ));
        }
        let mut layer = NetLayer {
            all: opts.all,
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
            pid,
            collector,
            attach: report,
            clock: MonoClock::new(),
            prev: first.clone(),
            first,
            events: EventLog::default(),
            known_peers: 0,
        };
        // A listener the target opened while the programs were being attached was seen by
        // neither the first read nor the kernel.
        layer.refresh_ports();
        Ok(layer)
    }

    pub fn start(&self) -> Instant {
        self.first.at
    }

    /// Takes over `old`'s churn window and its warm-up (a followed node restarted).
    pub fn adopt_baselines(&mut self, old: &mut NetLayer) {
        std::mem::swap(&mut self.churn, &mut old.churn);
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

    /// The listening ports as of this interval. Reading /proc/PID/net/tcp walks the kernel's
    /// whole TCP hash table (most of ckb-probe's CPU when done every second), so it is only
    /// repeated where the kernel programs cannot learn a new listener themselves.
    fn interval_ports(&mut self) {
        if self.attach.learns_listen_ports() {
            self.cls.listen_ports = self.collector.listen_ports();
        } else {
            self.refresh_ports();
        }
    }

    fn compute(&self, from: &NetSnapshot, cur: &NetSnapshot) -> NetInterval {
        let index = RpcIndex::new(&self.rpc.peers);
        let rpc = (!self.rpc.peers.is_empty()).then_some(&index);
        interval(from, cur, &self.cls, rpc, self.all)
    }

    pub fn poll(&mut self) -> usize {
        let mut batch = Vec::new();
        self.collector.drain_events(|ev| batch.push(ev));
        let n = batch.len();
        for ev in batch {
            let rec = EventRecord::new(&ev, self.clock.wall(ev.ts_ns), &self.cls);
            *self.events.totals.entry(rec.kind).or_default() += 1;
            self.churn.push(&rec);
            if !(rec.p2p || self.all) {
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

    /// The interval ending now, and what the correlation rules need of it.
    pub fn tick(&mut self, now: Instant) -> Result<(NetSection, Disconnects)> {
        let cur = self.collector.snapshot()?;
        self.interval_ports();
        let new_peer = cur.peers.len() > self.known_peers;
        self.known_peers = cur.peers.len();
        self.rpc.refresh(now, new_peer);
        let stats = self.compute(&self.prev, &cur);
        let wall = SystemTime::now();
        let (alerts, reconnecting) = self.churn.evaluate(now, wall);
        let cutoff = wall - Duration::from_secs(60);
        while self.events.recent.front().is_some_and(|e| e.wall < cutoff) {
            self.events.recent.pop_front();
        }
        let skip = self.events.recent.len().saturating_sub(RECENT_IN_REPORT);
        let signals = Disconnects {
            storm: alerts
                .iter()
                .find(|a| a.kind == "disconnection_storm")
                .map(|a| a.count),
            reconnecting: reconnecting.iter().map(|r| r.peer.clone()).collect(),
        };
        let section = NetSection {
            path: self.attach.path.to_string(),
            stats,
            events: std::mem::take(&mut self.events.fresh),
            events_dropped: std::mem::take(&mut self.events.fresh_dropped),
            alerts,
            reconnecting,
            rpc: self.rpc.reachable,
            warmup_left_secs: self.churn.warmup_left(now).as_secs_f64(),
            recent_events: self.events.recent.iter().skip(skip).cloned().collect(),
            events_60s: self.events.recent.len() as u64,
            run: None,
        };
        self.prev = cur;
        Ok((section, signals))
    }

    pub fn summary(&mut self) -> Result<NetSection> {
        let cur = self.collector.snapshot()?;
        let stats = self.compute(&self.first, &cur);
        Ok(NetSection {
            path: self.attach.path.to_string(),
            stats,
            rpc: self.rpc.reachable,
            run: Some(NetRun {
                programs: self.attach.programs.iter().map(|p| p.to_string()).collect(),
                sock_layout: self.attach.sock_layout.to_string(),
                listen_ports: self.cls.listen_ports.clone(),
                p2p_ports: self.p2p_ports.clone(),
                event_counts: self.events.totals.clone(),
                max_disconnections_60s: self.churn.max_disconnects,
                storms: self.churn.storms,
                reconnecting_peers: self.churn.reconnecting_seen.clone(),
            }),
            ..NetSection::default()
        })
    }
}
