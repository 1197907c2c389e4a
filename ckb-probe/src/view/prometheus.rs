//! The Prometheus view of a run: the interval reports of a session folded into metrics, encoded
//! in the Prometheus text format (0.0.4) or OpenMetrics by the official client crate.
//!
//! Reports carry interval deltas; Prometheus wants counters that only grow. [`Exporter`] keeps
//! the running sums: every counter is the sum of the deltas of every interval it has seen, so
//! it never goes backwards while the target lives. The few numbers the model gives since attach
//! (the latency histograms, the network totals and per-peer bytes) are turned into increments
//! against the previous report, so a new session (a new target PID) continues the sums instead
//! of restarting them. Nothing here touches the kernel or the session: it is a function of the
//! reports it is fed, testable from hand-made reports.
//!
//! Metric names follow Prometheus conventions: a `ckb_probe_` prefix, base units (seconds,
//! bytes), `_total` for counters, one family per quantity with labels for the operation,
//! function, column family, system call and thread role. [`METRICS`] lists every family.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use ckb_probe_common::rocksdb::Op;
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
    },
    metrics::MetricType,
    registry::{Registry, Unit},
};

use crate::{
    analysis::{net::PeerReport, rocksdb::OpReport},
    model::{Bucket, Kind, LayerName, Report},
};

/// Every metric family the exporter may serve: (name as scraped, type, labels).
pub const METRICS: &[(&str, &str, &str)] = &[
    ("ckb_probe_rocksdb_calls_total", "counter", "op, function"),
    ("ckb_probe_rocksdb_errors_total", "counter", "op, function"),
    ("ckb_probe_rocksdb_hits_total", "counter", "op, function"),
    ("ckb_probe_rocksdb_misses_total", "counter", "op, function"),
    ("ckb_probe_rocksdb_bytes_total", "counter", "op, function"),
    (
        "ckb_probe_rocksdb_time_seconds_total",
        "counter",
        "op, function",
    ),
    ("ckb_probe_rocksdb_latency_seconds", "histogram", "op"),
    (
        "ckb_probe_rocksdb_cf_calls_total",
        "counter",
        "op, cf, column",
    ),
    (
        "ckb_probe_rocksdb_cf_errors_total",
        "counter",
        "op, cf, column",
    ),
    (
        "ckb_probe_rocksdb_cf_hits_total",
        "counter",
        "op, cf, column",
    ),
    (
        "ckb_probe_rocksdb_cf_misses_total",
        "counter",
        "op, cf, column",
    ),
    (
        "ckb_probe_rocksdb_cf_bytes_total",
        "counter",
        "op, cf, column",
    ),
    (
        "ckb_probe_rocksdb_cf_time_seconds_total",
        "counter",
        "op, cf, column",
    ),
    ("ckb_probe_rocksdb_functions_attached", "gauge", ""),
    ("ckb_probe_rocksdb_cf_unresolved_total", "counter", ""),
    ("ckb_probe_rocksdb_mode", "gauge", "mode"),
    ("ckb_probe_syscall_calls_total", "counter", "syscall, role"),
    ("ckb_probe_syscall_errors_total", "counter", "syscall, role"),
    (
        "ckb_probe_syscall_time_seconds_total",
        "counter",
        "syscall, role",
    ),
    ("ckb_probe_syscall_bytes_total", "counter", "syscall, role"),
    ("ckb_probe_syscall_waits_total", "counter", "syscall, role"),
    ("ckb_probe_threads", "gauge", "role"),
    ("ckb_probe_net_bytes_total", "counter", "direction"),
    ("ckb_probe_net_retransmits_total", "counter", ""),
    ("ckb_probe_net_connection_events_total", "counter", "event"),
    ("ckb_probe_net_peer_events_total", "counter", "event"),
    ("ckb_probe_net_peers", "gauge", ""),
    ("ckb_probe_net_open_connections", "gauge", ""),
    (
        "ckb_probe_net_peer_bytes_total",
        "counter",
        "peer, direction",
    ),
    ("ckb_probe_net_peer_retransmits_total", "counter", "peer"),
    ("ckb_probe_alerts_total", "counter", "source, type, subject"),
    ("ckb_probe_alerts_active", "gauge", "source, type, subject"),
    ("ckb_probe_target_up", "gauge", ""),
    ("ckb_probe_target_restarts_total", "counter", ""),
    (
        "ckb_probe_target_info",
        "info",
        "pid, node, kernel, version",
    ),
    ("ckb_probe_layer_up", "gauge", "layer"),
    ("ckb_probe_lost_events_total", "counter", "layer"),
    ("ckb_probe_unpaired_total", "counter", "layer"),
    ("ckb_probe_map_full_total", "counter", "layer"),
    ("ckb_probe_polls_total", "counter", ""),
    ("ckb_probe_poll_errors_total", "counter", ""),
    ("ckb_probe_last_poll_timestamp_seconds", "gauge", ""),
];

/// What the exporter is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Peers that get their own `peer` label; the others are summed under `peer="other"`.
    pub top_peers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { top_peers: 10 }
    }
}

/// The two encodings a scrape can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it is asked for with at least
    /// the weight of plain text (Prometheus itself asks for it first), else the text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let (mut om, mut text) = (0.0f64, 0.0f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|v| v.parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// Upper bounds (ns) of the latency histogram's buckets: every power of two from 512 ns to
/// 2^35 ns (34 s) and the midpoint 1.5 × 2^k between two of them. Each is a boundary of the
/// kernel's log-linear buckets (8 per power of two), so the counts are exact, not interpolated;
/// 53 buckets plus `+Inf` keep a series count of a few hundred for the six operations, and
/// PromQL's linear interpolation inside a bucket is off by at most a third of its width.
/// A bucket holds the values below its bound (values are whole nanoseconds, so `le` is exact
/// to one nanosecond).
pub fn latency_bounds_ns() -> Vec<u64> {
    let mut b = Vec::new();
    for k in 9..35 {
        b.push(1u64 << k);
        b.push(3u64 << (k - 1));
    }
    b.push(1u64 << 35);
    b
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A value that is reported since attach, turned into increments: a drop means a new entry
/// (a new session, or a kernel map entry evicted and made again), whose whole value is new.
fn increment(cur: u64, last: u64) -> u64 {
    if cur >= last { cur - last } else { cur }
}

/// Running sums of one RocksDB function or (column family, operation).
#[derive(Clone, Debug, Default, PartialEq)]
struct OpCounts {
    calls: u64,
    errors: u64,
    hits: u64,
    misses: u64,
    /// `None` for operations without a payload size (DELETE, ITER_*).
    bytes: Option<u64>,
    time_ns: u64,
}

impl OpCounts {
    fn add(&mut self, r: &OpReport) {
        self.calls += r.count;
        self.errors += r.errors.unwrap_or(0);
        self.hits += r.hits.unwrap_or(0);
        self.misses += r.misses.unwrap_or(0);
        if let Some(b) = r.bytes {
            *self.bytes.get_or_insert(0) += b;
        }
        self.time_ns += r.total_ns;
    }
}

/// One operation's latency histogram as Prometheus buckets, and its running sum.
#[derive(Clone, Debug, PartialEq)]
struct Hist {
    /// Per bucket (not cumulative), the last `+Inf` included.
    counts: Vec<u64>,
    /// The since-attach counts of the last report, to turn them into increments.
    last: Vec<u64>,
    sum_ns: u64,
}

impl Hist {
    fn new(n: usize) -> Self {
        Hist {
            counts: vec![0; n + 1],
            last: vec![0; n + 1],
            sum_ns: 0,
        }
    }

    /// Folds a since-attach sparse histogram of the kernel into the buckets.
    fn observe(&mut self, bounds: &[u64], since_attach: &[Bucket], new_session: bool) {
        let mut cur = vec![0u64; bounds.len() + 1];
        for b in since_attach {
            // The first bound above the kernel bucket's low end; bounds are kernel bucket
            // boundaries, so the whole kernel bucket lies below it.
            cur[bounds.partition_point(|&le| le <= b.low_ns)] += b.count;
        }
        if new_session {
            self.last.iter_mut().for_each(|v| *v = 0);
        }
        for (i, c) in cur.iter().enumerate() {
            self.counts[i] += increment(*c, self.last[i]);
        }
        self.last = cur;
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct SysCounts {
    calls: u64,
    errors: u64,
    time_ns: u64,
    bytes: Option<u64>,
    waits: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct PeerCounts {
    sent: u64,
    received: u64,
    retransmits: u64,
}

impl PeerCounts {
    fn of(p: &PeerReport) -> Self {
        PeerCounts {
            sent: p.bytes_sent,
            received: p.bytes_received,
            retransmits: p.retransmits,
        }
    }

    fn add(&mut self, d: PeerCounts) {
        self.sent += d.sent;
        self.received += d.received;
        self.retransmits += d.retransmits;
    }

    fn increment(self, last: PeerCounts) -> PeerCounts {
        PeerCounts {
            sent: increment(self.sent, last.sent),
            received: increment(self.received, last.received),
            retransmits: increment(self.retransmits, last.retransmits),
        }
    }

    fn is_zero(self) -> bool {
        self == PeerCounts::default()
    }
}

/// A labelled peer: its sums and when it last moved a byte or had a connection open.
#[derive(Clone, Debug)]
struct Labelled {
    counts: PeerCounts,
    last_active: f64,
}

/// Per-peer counters with bounded cardinality. A peer gets its own label when a slot is free
/// (the busiest unlabelled peers first, open connections before closed ones) and keeps it while
/// it is active and for [`Peers::GRACE_SECS`] after, so its series never jumps between labels;
/// the traffic of every other peer is summed under `peer="other"`. The label set sums to the
/// model's P2P peers exactly. A peer that lost its label and gets one again continues its old
/// series (kept for [`Peers::RETIRED_SECS`]).
#[derive(Clone, Debug, Default)]
struct Peers {
    /// Since-attach values of the last report, per peer endpoint.
    last: BTreeMap<String, PeerCounts>,
    labelled: BTreeMap<String, Labelled>,
    retired: BTreeMap<String, (PeerCounts, f64)>,
    other: PeerCounts,
}

impl Peers {
    const GRACE_SECS: f64 = 60.0;
    const RETIRED_SECS: f64 = 3_600.0;
    const RETIRED_MAX: usize = 4_096;

    fn endpoint(p: &PeerReport) -> String {
        if p.remote.contains(':') {
            format!("[{}]:{}", p.remote, p.port)
        } else {
            format!("{}:{}", p.remote, p.port)
        }
    }

    fn observe(&mut self, peers: &[PeerReport], now: f64, top: usize, new_session: bool) {
        if new_session {
            self.last.clear();
        }
        // Since-attach values now, the increments since the last report, and activity.
        let mut cur: BTreeMap<String, (PeerCounts, PeerCounts, bool)> = BTreeMap::new();
        for p in peers {
            let key = Self::endpoint(p);
            let now_v = PeerCounts::of(p);
            let inc = now_v.increment(self.last.get(&key).copied().unwrap_or_default());
            // One endpoint is one row in the model; merge defensively all the same.
            let e = cur.entry(key).or_default();
            e.0.add(now_v);
            e.1.add(inc);
            e.2 |= p.open > 0;
        }
        // Labels of peers quiet (or gone) for the grace period are freed.
        for (key, l) in self.labelled.iter_mut() {
            if let Some((_, inc, open)) = cur.get(key)
                && (*open || !inc.is_zero())
            {
                l.last_active = now;
            }
        }
        let expired: Vec<String> = self
            .labelled
            .iter()
            .filter(|(_, l)| now - l.last_active >= Self::GRACE_SECS)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(l) = self.labelled.remove(&key) {
                self.retired.insert(key, (l.counts, now));
            }
        }
        // Free slots go to the busiest unlabelled peers, open ones first.
        if self.labelled.len() < top {
            let mut candidates: Vec<(&String, u64, bool)> = cur
                .iter()
                .filter(|(k, _)| !self.labelled.contains_key(*k))
                .map(|(k, (v, _, open))| (k, v.sent + v.received, *open))
                .collect();
            candidates.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(b.0)));
            for (key, _, _) in candidates.into_iter().take(top - self.labelled.len()) {
                let counts = self.retired.remove(key).map(|r| r.0).unwrap_or_default();
                self.labelled.insert(
                    key.clone(),
                    Labelled {
                        counts,
                        last_active: now,
                    },
                );
            }
        }
        for (key, (_, inc, _)) in &cur {
            match self.labelled.get_mut(key) {
                Some(l) => l.counts.add(*inc),
                None => self.other.add(*inc),
            }
        }
        self.last = cur.into_iter().map(|(k, (v, _, _))| (k, v)).collect();
        self.retired
            .retain(|_, (_, since)| now - *since < Self::RETIRED_SECS);
        while self.retired.len() > Self::RETIRED_MAX {
            let oldest = self
                .retired
                .iter()
                .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.retired.remove(&k),
                None => break,
            };
        }
    }
}

/// An alert series: where it comes from, its type, and what it is about (the operation of a
/// RocksDB anomaly; empty otherwise: a peer would make the label set unbounded).
type AlertKey = (&'static str, String, String);

#[derive(Clone, Debug, Default)]
struct Target {
    pid: u32,
    node: String,
    kernel: String,
}

/// Everything the metrics are made of.
#[derive(Debug)]
struct State {
    bounds: Vec<u64>,
    top_peers: usize,
    target: Option<Target>,
    target_up: bool,
    /// Times a followed target was replaced by its successor.
    restarts: u64,
    layers: BTreeMap<LayerName, bool>,
    functions_attached: Option<u64>,
    polls: u64,
    poll_errors: u64,
    last_poll: Option<f64>,
    lost: BTreeMap<LayerName, u64>,
    unpaired: BTreeMap<LayerName, u64>,
    map_full: BTreeMap<LayerName, u64>,
    cf_unresolved: u64,
    /// The RocksDB layer runs in lightweight mode (entry probes only).
    rocks_entry_only: bool,
    rocks_fn: BTreeMap<(&'static str, String), OpCounts>,
    rocks_cf: BTreeMap<(String, &'static str), (Option<&'static str>, OpCounts)>,
    rocks_hist: BTreeMap<&'static str, Hist>,
    sys: BTreeMap<(String, &'static str), SysCounts>,
    threads: BTreeMap<&'static str, usize>,
    net_totals: BTreeMap<&'static str, u64>,
    net_last: BTreeMap<&'static str, u64>,
    net_gauges: Option<(u64, u64)>,
    peer_events: BTreeMap<&'static str, u64>,
    peers: Peers,
    alerts_total: BTreeMap<AlertKey, u64>,
    alerts_active: BTreeMap<AlertKey, u64>,
    /// The alerts of the last report, by series and start (and peer): a new start counts one.
    alerts_seen: BTreeSet<(AlertKey, String)>,
}

/// Connection counters of the network layer, since attach in the model.
const NET_EVENTS: [&str; 5] = ["connect", "accept", "adopt", "close", "disconnect"];

impl State {
    fn new(opts: Options) -> Self {
        State {
            bounds: latency_bounds_ns(),
            top_peers: opts.top_peers,
            target: None,
            target_up: false,
            restarts: 0,
            layers: BTreeMap::new(),
            functions_attached: None,
            polls: 0,
            poll_errors: 0,
            last_poll: None,
            lost: BTreeMap::new(),
            unpaired: BTreeMap::new(),
            map_full: BTreeMap::new(),
            cf_unresolved: 0,
            rocks_entry_only: false,
            rocks_fn: BTreeMap::new(),
            rocks_cf: BTreeMap::new(),
            rocks_hist: BTreeMap::new(),
            sys: BTreeMap::new(),
            threads: BTreeMap::new(),
            net_totals: BTreeMap::new(),
            net_last: BTreeMap::new(),
            net_gauges: None,
            peer_events: BTreeMap::new(),
            peers: Peers::default(),
            alerts_total: BTreeMap::new(),
            alerts_active: BTreeMap::new(),
            alerts_seen: BTreeSet::new(),
        }
    }

    fn observe(&mut self, r: &Report, now: f64) {
        let h = &r.header;
        let new_session = self.target.as_ref().is_none_or(|t| t.pid != h.pid);
        if new_session && self.target.is_some() {
            self.restarts += 1;
        }
        self.target = Some(Target {
            pid: h.pid,
            node: h.node.clone(),
            kernel: h.kernel.clone(),
        });
        self.target_up = true;
        self.layers.clear();
        for l in &h.layers {
            self.layers.insert(*l, true);
        }
        for u in &r.unavailable {
            self.layers.insert(u.layer, false);
        }
        self.polls += 1;
        self.last_poll = Some(now);
        // Known alert series are always served (0 when quiet), so "is anything firing" has an
        // answer before the first alert.
        for v in self.alerts_active.values_mut() {
            *v = 0;
        }
        let mut active: Vec<(AlertKey, String)> = Vec::new();

        if let Some(s) = &r.rocksdb {
            let st = &s.stats;
            self.rocks_entry_only = st.entry_only;
            for (function, rep) in &st.functions {
                let op = op_of_function(function);
                self.rocks_fn
                    .entry((op, function.to_string()))
                    .or_default()
                    .add(rep);
            }
            for cf in &st.column_families {
                for (op, rep) in &cf.operations {
                    let e = self
                        .rocks_cf
                        .entry((cf.name.clone(), *op))
                        .or_insert_with(|| (cf.column, OpCounts::default()));
                    e.1.add(rep);
                }
            }
            let n = self.bounds.len();
            for (op, buckets) in &s.histograms {
                let bounds = &self.bounds;
                let hist = self.rocks_hist.entry(*op).or_insert_with(|| Hist::new(n));
                hist.observe(bounds, buckets, new_session);
            }
            for (op, rep) in &st.operations {
                self.rocks_hist
                    .entry(*op)
                    .or_insert_with(|| Hist::new(n))
                    .sum_ns += rep.total_ns;
            }
            *self.lost.entry(LayerName::Rocksdb).or_default() += st.lost_events;
            *self.unpaired.entry(LayerName::Rocksdb).or_default() += st.unpaired;
            *self.map_full.entry(LayerName::Rocksdb).or_default() += st.stats_full;
            self.cf_unresolved += st.cf_unresolved;
            if let Some(a) = &s.attach {
                self.functions_attached = Some(a.attached.len() as u64);
            }
            for op in Op::ALL {
                self.alerts_active
                    .entry(("rocksdb", "latency_spike".into(), op.name().into()))
                    .or_insert(0);
            }
            for a in &s.anomalies {
                let key = ("rocksdb", a.kind.to_string(), a.operation.to_string());
                active.push((key, a.time.clone()));
            }
        }

        if let Some(s) = &r.syscall {
            let st = &s.stats;
            for (role, calls) in &st.roles {
                for (name, rep) in calls {
                    let e = self.sys.entry((name.clone(), *role)).or_default();
                    e.calls += rep.count;
                    e.errors += rep.errors;
                    e.time_ns += rep.total_ns;
                    if let Some(b) = rep.bytes {
                        *e.bytes.get_or_insert(0) += b;
                    }
                    if let Some(w) = rep.waits {
                        *e.waits.get_or_insert(0) += w;
                    }
                }
            }
            self.threads = st.threads.clone();
            *self.unpaired.entry(LayerName::Syscall).or_default() += st.unpaired;
            *self.map_full.entry(LayerName::Syscall).or_default() += st.stats_full + st.hist_full;
            self.lost.entry(LayerName::Syscall).or_default();
        }

        if let Some(s) = &r.net {
            let t = &s.stats.totals;
            let since_attach: [(&'static str, u64); 8] = [
                ("sent", t.bytes_sent),
                ("received", t.bytes_received),
                ("retransmits", t.retransmits),
                ("connect", t.connects),
                ("accept", t.accepts),
                ("adopt", t.adopted),
                ("close", t.closes),
                ("disconnect", t.disconnects),
            ];
            if new_session {
                self.net_last.clear();
            }
            for (k, v) in since_attach {
                let last = self.net_last.insert(k, v).unwrap_or(0);
                *self.net_totals.entry(k).or_default() += increment(v, last);
            }
            self.net_gauges = Some((t.peers, t.open_connections));
            for k in NET_EVENTS {
                self.peer_events.entry(k).or_default();
            }
            for e in &s.events {
                *self.peer_events.entry(e.kind).or_default() += 1;
                if e.is_disconnect() {
                    *self.peer_events.entry("disconnect").or_default() += 1;
                }
            }
            self.peers
                .observe(&s.stats.peers, now, self.top_peers, new_session);
            *self.lost.entry(LayerName::Net).or_default() += s.stats.lost_events;
            *self.map_full.entry(LayerName::Net).or_default() += s.stats.map_full;
            for kind in ["disconnection_storm", "reconnecting_peer"] {
                self.alerts_active
                    .entry(("net", kind.into(), String::new()))
                    .or_insert(0);
            }
            for a in &s.alerts {
                let id = format!("{} {}", a.since, a.peer.as_deref().unwrap_or(""));
                active.push((("net", a.kind.to_string(), String::new()), id));
            }
        }

        if let Some(cs) = &r.correlations {
            for kind in ["lock_contention", "io_bottleneck", "disconnection_storm"] {
                self.alerts_active
                    .entry(("correlation", kind.into(), String::new()))
                    .or_insert(0);
            }
            for c in cs {
                active.push((
                    ("correlation", c.kind.to_string(), String::new()),
                    c.time.clone(),
                ));
            }
        }

        let mut seen = BTreeSet::new();
        for (key, id) in active {
            *self.alerts_active.entry(key.clone()).or_default() += 1;
            let entry = (key, id);
            if !self.alerts_seen.contains(&entry) {
                *self.alerts_total.entry(entry.0.clone()).or_default() += 1;
            }
            seen.insert(entry);
        }
        self.alerts_seen = seen;
        for key in self.alerts_active.keys() {
            self.alerts_total.entry(key.clone()).or_default();
        }
    }
}

/// The operation of a traced function, by its symbol.
fn op_of_function(function: &str) -> &'static str {
    ckb_probe_common::rocksdb::TRACED
        .iter()
        .find(|f| f.symbol == function)
        .map_or("?", |f| f.op.name())
}

fn layer_label(l: &LayerName) -> [(&'static str, &'static str); 1] {
    [("layer", l.name())]
}

/// Writes one family; nothing (not even its HELP) when it has no series.
fn family<L: EncodeLabelSet, V>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(L, V)],
    write: impl Fn(prometheus_client::encoding::MetricEncoder, &V) -> fmt::Result,
    ty: MetricType,
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit, ty)?;
    for (labels, v) in rows {
        write(m.encode_family(labels)?, v)?;
    }
    Ok(())
}

fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(L, V)],
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        unit,
        rows,
        |mut m, v| m.encode_counter::<NoLabelSet, _, u64>(v, None),
        MetricType::Counter,
    )
}

fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(L, V)],
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        unit,
        rows,
        |mut m, v| m.encode_gauge(v),
        MetricType::Gauge,
    )
}

const NO_LABELS: [(&str, &str); 0] = [];

/// Encodes the state at scrape-rendering time (the client crate's custom-collector pattern: the
/// numbers live in the model's running sums, not in the crate's atomics).
#[derive(Debug)]
struct StateCollector(Arc<Mutex<State>>);

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        encode_rocksdb(&st, &mut enc)?;
        encode_syscall(&st, &mut enc)?;
        encode_net(&st, &mut enc)?;
        encode_alerts(&st, &mut enc)?;
        encode_health(&st, &mut enc)
    }
}

fn encode_rocksdb(st: &State, enc: &mut DescriptorEncoder) -> fmt::Result {
    type Row<'a> = ([(&'static str, &'a str); 2], u64);
    let fn_rows = |f: &dyn Fn(&OpCounts) -> Option<u64>| -> Vec<Row<'_>> {
        st.rocks_fn
            .iter()
            .filter_map(|((op, function), c)| {
                Some(([("op", *op), ("function", function.as_str())], f(c)?))
            })
            .collect()
    };
    let is_get = |op: &str| op == Op::Get.name();
    // Lightweight mode knows no outcome, latency or GET size: those series are left out
    // rather than served as zeros.
    let full = !st.rocks_entry_only;
    counters(
        enc,
        "ckb_probe_rocksdb_calls",
        "RocksDB C API calls of the target, per traced function",
        None,
        &fn_rows(&|c| Some(c.calls)),
    )?;
    if st.layers.contains_key(&LayerName::Rocksdb) {
        let mode = if full { "full" } else { "lightweight" };
        gauges(
            enc,
            "ckb_probe_rocksdb_mode",
            "How the RocksDB layer probes: full (entry and return) or lightweight (entry only: calls and PUT/WRITE bytes, no latency, GET bytes, hits, misses or errors)",
            None,
            &[([("mode", mode)], 1)],
        )?;
    }
    counters(
        enc,
        "ckb_probe_rocksdb_errors",
        "RocksDB calls that returned an error (non-null errptr)",
        None,
        &fn_rows(&|c| full.then_some(c.errors)),
    )?;
    let get_rows = |f: fn(&OpCounts) -> u64| -> Vec<Row<'_>> {
        st.rocks_fn
            .iter()
            .filter(|((op, _), _)| full && is_get(op))
            .map(|((op, function), c)| ([("op", *op), ("function", function.as_str())], f(c)))
            .collect()
    };
    counters(
        enc,
        "ckb_probe_rocksdb_hits",
        "RocksDB reads that found their key",
        None,
        &get_rows(|c| c.hits),
    )?;
    counters(
        enc,
        "ckb_probe_rocksdb_misses",
        "RocksDB reads that did not find their key",
        None,
        &get_rows(|c| c.misses),
    )?;
    counters(
        enc,
        "ckb_probe_rocksdb",
        "Payload bytes of RocksDB calls (GET: value read, PUT: key + value, WRITE: batch or transaction content)",
        Some(&Unit::Bytes),
        &fn_rows(&|c| c.bytes),
    )?;
    let time_rows: Vec<([(&str, &str); 2], f64)> = st
        .rocks_fn
        .iter()
        .filter(|_| full)
        .map(|((op, function), c)| {
            (
                [("op", *op), ("function", function.as_str())],
                secs(c.time_ns),
            )
        })
        .collect();
    counters(
        enc,
        "ckb_probe_rocksdb_time",
        "Time spent in RocksDB calls, entry to return",
        Some(&Unit::Seconds),
        &time_rows,
    )?;

    if full && !st.rocks_hist.is_empty() {
        let mut m = enc.encode_descriptor(
            "ckb_probe_rocksdb_latency",
            "Latency of RocksDB calls per operation, since the exporter started (buckets are boundaries of the kernel's log-linear histogram)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let bounds: Vec<f64> = st
            .bounds
            .iter()
            .map(|&b| secs(b))
            .chain([f64::INFINITY])
            .collect();
        for (op, h) in &st.rocks_hist {
            let buckets: Vec<(f64, u64)> = bounds
                .iter()
                .copied()
                .zip(h.counts.iter().copied())
                .collect();
            let count = h.counts.iter().sum();
            m.encode_family(&[("op", *op)])?
                .encode_histogram::<NoLabelSet>(secs(h.sum_ns), count, &buckets, None)?;
        }
    }

    type CfRow<'a> = ([(&'static str, &'a str); 3], u64);
    let cf_rows = |f: &dyn Fn(&OpCounts) -> Option<u64>, gets_only: bool| -> Vec<CfRow<'_>> {
        st.rocks_cf
            .iter()
            .filter(|((_, op), _)| !gets_only || is_get(op))
            .filter_map(|((cf, op), (column, c))| {
                Some((
                    [
                        ("op", *op),
                        ("cf", cf.as_str()),
                        ("column", column.unwrap_or("")),
                    ],
                    f(c)?,
                ))
            })
            .collect()
    };
    counters(
        enc,
        "ckb_probe_rocksdb_cf_calls",
        "RocksDB calls per column family (cf: RocksDB's name; column: CKB's column name)",
        None,
        &cf_rows(&|c| Some(c.calls), false),
    )?;
    counters(
        enc,
        "ckb_probe_rocksdb_cf_errors",
        "RocksDB calls that returned an error, per column family",
        None,
        &cf_rows(&|c| full.then_some(c.errors), false),
    )?;
    counters(
        enc,
        "ckb_probe_rocksdb_cf_hits",
        "RocksDB reads that found their key, per column family",
        None,
        &cf_rows(&|c| full.then_some(c.hits), true),
    )?;
    counters(
        enc,
        "ckb_probe_rocksdb_cf_misses",
        "RocksDB reads that did not find their key, per column family",
        None,
        &cf_rows(&|c| full.then_some(c.misses), true),
    )?;
    counters(
        enc,
        "ckb_probe_rocksdb_cf",
        "Payload bytes of RocksDB calls, per column family",
        Some(&Unit::Bytes),
        &cf_rows(&|c| c.bytes, false),
    )?;
    let cf_time: Vec<([(&str, &str); 3], f64)> = st
        .rocks_cf
        .iter()
        .filter(|_| full)
        .map(|((cf, op), (column, c))| {
            (
                [
                    ("op", *op),
                    ("cf", cf.as_str()),
                    ("column", column.unwrap_or("")),
                ],
                secs(c.time_ns),
            )
        })
        .collect();
    counters(
        enc,
        "ckb_probe_rocksdb_cf_time",
        "Time spent in RocksDB calls, per column family",
        Some(&Unit::Seconds),
        &cf_time,
    )?;
    if let Some(n) = st.functions_attached {
        gauges(
            enc,
            "ckb_probe_rocksdb_functions_attached",
            "RocksDB C functions with their entry and return probes attached (0 after the target exited)",
            None,
            &[(NO_LABELS, if st.target_up { n } else { 0 })],
        )?;
    }
    if st.layers.contains_key(&LayerName::Rocksdb) {
        counters(
            enc,
            "ckb_probe_rocksdb_cf_unresolved",
            "Column-family handles whose object layout did not validate (their calls count as cf=\"unknown\")",
            None,
            &[(NO_LABELS, st.cf_unresolved)],
        )?;
    }
    Ok(())
}

fn encode_syscall(st: &State, enc: &mut DescriptorEncoder) -> fmt::Result {
    type Row<'a> = ([(&'static str, &'a str); 2], u64);
    let rows = |f: &dyn Fn(&SysCounts) -> Option<u64>| -> Vec<Row<'_>> {
        st.sys
            .iter()
            .filter_map(|((name, role), c)| {
                Some(([("syscall", name.as_str()), ("role", *role)], f(c)?))
            })
            .collect()
    };
    counters(
        enc,
        "ckb_probe_syscall_calls",
        "System calls of the target, per call and thread role",
        None,
        &rows(&|c| Some(c.calls)),
    )?;
    counters(
        enc,
        "ckb_probe_syscall_errors",
        "System calls that returned an errno (EAGAIN, ETIMEDOUT and EINTR included)",
        None,
        &rows(&|c| Some(c.errors)),
    )?;
    let time: Vec<([(&str, &str); 2], f64)> = st
        .sys
        .iter()
        .map(|((name, role), c)| {
            (
                [("syscall", name.as_str()), ("role", *role)],
                secs(c.time_ns),
            )
        })
        .collect();
    counters(
        enc,
        "ckb_probe_syscall_time",
        "Time spent in system calls, entry to exit",
        Some(&Unit::Seconds),
        &time,
    )?;
    counters(
        enc,
        "ckb_probe_syscall",
        "Bytes moved by read- and write-family system calls (sum of positive returns)",
        Some(&Unit::Bytes),
        &rows(&|c| c.bytes),
    )?;
    counters(
        enc,
        "ckb_probe_syscall_waits",
        "Futex-family calls that waited (FUTEX_WAIT-like operations)",
        None,
        &rows(&|c| c.waits),
    )?;
    let threads: Vec<([(&str, &str); 1], u64)> = st
        .threads
        .iter()
        .map(|(role, n)| ([("role", *role)], *n as u64))
        .collect();
    gauges(
        enc,
        "ckb_probe_threads",
        "Live threads of the target per role (from their names)",
        None,
        &threads,
    )
}

fn encode_net(st: &State, enc: &mut DescriptorEncoder) -> fmt::Result {
    let Some((peers, open)) = st.net_gauges else {
        return Ok(());
    };
    let t = |k: &str| st.net_totals.get(k).copied().unwrap_or(0);
    counters(
        enc,
        "ckb_probe_net",
        "TCP payload bytes of every connection of the target (P2P or not)",
        Some(&Unit::Bytes),
        &[
            ([("direction", "sent")], t("sent")),
            ([("direction", "received")], t("received")),
        ],
    )?;
    counters(
        enc,
        "ckb_probe_net_retransmits",
        "TCP retransmissions on connections of the target",
        None,
        &[(NO_LABELS, t("retransmits"))],
    )?;
    let events: Vec<([(&str, &str); 1], u64)> =
        NET_EVENTS.iter().map(|e| ([("event", *e)], t(e))).collect();
    counters(
        enc,
        "ckb_probe_net_connection_events",
        "TCP connection events of the target, P2P or not (disconnect: a close of an established connection)",
        None,
        &events,
    )?;
    let pe: Vec<([(&str, &str); 1], u64)> = st
        .peer_events
        .iter()
        .map(|(e, n)| ([("event", *e)], *n))
        .collect();
    counters(
        enc,
        "ckb_probe_net_peer_events",
        "Connection events of P2P peers (disconnect: a close of an established connection)",
        None,
        &pe,
    )?;
    gauges(
        enc,
        "ckb_probe_net_peers",
        "P2P peers the kernel tracks for the target",
        None,
        &[(NO_LABELS, peers)],
    )?;
    gauges(
        enc,
        "ckb_probe_net_open_connections",
        "Open P2P connections",
        None,
        &[(NO_LABELS, open)],
    )?;
    let mut rows: Vec<(&str, PeerCounts)> = st
        .peers
        .labelled
        .iter()
        .map(|(k, l)| (k.as_str(), l.counts))
        .collect();
    rows.push(("other", st.peers.other));
    let bytes: Vec<([(&str, &str); 2], u64)> = rows
        .iter()
        .flat_map(|(peer, c)| {
            [
                ([("peer", *peer), ("direction", "sent")], c.sent),
                ([("peer", *peer), ("direction", "received")], c.received),
            ]
        })
        .collect();
    counters(
        enc,
        "ckb_probe_net_peer",
        "TCP payload bytes per P2P peer (the busiest peers by name, the rest as peer=\"other\")",
        Some(&Unit::Bytes),
        &bytes,
    )?;
    let retr: Vec<([(&str, &str); 1], u64)> = rows
        .iter()
        .map(|(peer, c)| ([("peer", *peer)], c.retransmits))
        .collect();
    counters(
        enc,
        "ckb_probe_net_peer_retransmits",
        "TCP retransmissions per P2P peer",
        None,
        &retr,
    )
}

fn encode_alerts(st: &State, enc: &mut DescriptorEncoder) -> fmt::Result {
    let rows = |m: &BTreeMap<AlertKey, u64>| -> Vec<([(&'static str, String); 3], u64)> {
        m.iter()
            .map(|((source, kind, subject), n)| {
                (
                    [
                        ("source", source.to_string()),
                        ("type", kind.clone()),
                        ("subject", subject.clone()),
                    ],
                    *n,
                )
            })
            .collect()
    };
    counters(
        enc,
        "ckb_probe_alerts",
        "Alerts raised by ckb-probe's rules (source: rocksdb anomaly, net churn, cross-layer correlation)",
        None,
        &rows(&st.alerts_total),
    )?;
    gauges(
        enc,
        "ckb_probe_alerts_active",
        "Alerts active at the last poll (reconnecting_peer: the number of such peers)",
        None,
        &rows(&st.alerts_active),
    )
}

fn encode_health(st: &State, enc: &mut DescriptorEncoder) -> fmt::Result {
    gauges(
        enc,
        "ckb_probe_target_up",
        "1 while the target runs with the probes attached, 0 after it exited",
        None,
        &[(NO_LABELS, u64::from(st.target_up))],
    )?;
    if let Some(t) = &st.target {
        let mut m = enc.encode_descriptor(
            "ckb_probe_target",
            "The traced process: PID, node (CKB version or process name), kernel release, ckb-probe version",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[
            ("pid", t.pid.to_string()),
            ("node", t.node.clone()),
            ("kernel", t.kernel.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ])?;
    }
    let layers: Vec<([(&str, &str); 1], u64)> = st
        .layers
        .iter()
        .map(|(l, up)| (layer_label(l), u64::from(*up && st.target_up)))
        .collect();
    gauges(
        enc,
        "ckb_probe_layer_up",
        "1 for each layer attached to the target, 0 for a layer that could not attach or after the target exited",
        None,
        &layers,
    )?;
    let per_layer = |m: &BTreeMap<LayerName, u64>| -> Vec<([(&str, &str); 1], u64)> {
        m.iter().map(|(l, n)| (layer_label(l), *n)).collect()
    };
    counters(
        enc,
        "ckb_probe_lost_events",
        "Events the kernel could not hand over (ring buffer full)",
        None,
        &per_layer(&st.lost),
    )?;
    counters(
        enc,
        "ckb_probe_unpaired",
        "Returns or exits with no matching entry (calls in flight at attach, evicted entries)",
        None,
        &per_layer(&st.unpaired),
    )?;
    counters(
        enc,
        "ckb_probe_map_full",
        "Updates not recorded because a kernel map was full",
        None,
        &per_layer(&st.map_full),
    )?;
    counters(
        enc,
        "ckb_probe_target_restarts",
        "Times the target exited and ckb-probe attached to its successor (export --follow)",
        None,
        &[(NO_LABELS, st.restarts)],
    )?;
    counters(
        enc,
        "ckb_probe_polls",
        "Successful reads of the kernel maps (one per report interval)",
        None,
        &[(NO_LABELS, st.polls)],
    )?;
    counters(
        enc,
        "ckb_probe_poll_errors",
        "Failed reads of the kernel maps",
        None,
        &[(NO_LABELS, st.poll_errors)],
    )?;
    if let Some(t) = st.last_poll {
        gauges(
            enc,
            "ckb_probe_last_poll_timestamp",
            "Unix time of the last successful read of the kernel maps",
            Some(&Unit::Seconds),
            &[(NO_LABELS, t)],
        )?;
    }
    Ok(())
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The metrics of a run: fed every interval report, rendered in either format.
pub struct Exporter {
    state: Arc<Mutex<State>>,
    registry: Registry,
}

impl Exporter {
    pub fn new(opts: Options) -> Self {
        let state = Arc::new(Mutex::new(State::new(opts)));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StateCollector(Arc::clone(&state))));
        Exporter { state, registry }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an interval report, made at `now`. A summary covers the whole run again: it is
    /// not added (its numbers are already in the sums).
    pub fn observe(&mut self, r: &Report, now: SystemTime) {
        if r.header.kind == Kind::Summary {
            return;
        }
        self.state().observe(r, unix(now));
    }

    /// A poll that failed (the metrics keep their last values; the failure is counted).
    pub fn poll_failed(&mut self) {
        self.state().poll_errors += 1;
    }

    /// The target exited and the probes are detached: counters keep their values (they cover
    /// the whole run), `ckb_probe_target_up` and the layers' gauges go to 0.
    pub fn target_exited(&mut self) {
        let mut st = self.state();
        st.target_up = false;
        for v in st.alerts_active.values_mut() {
            *v = 0;
        }
    }

    pub fn render(&self, format: Format) -> String {
        let mut out = String::with_capacity(64 * 1024);
        // Writing into a String cannot fail, and the collector returns no error of its own.
        let _ = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

#[cfg(test)]
mod tests;
