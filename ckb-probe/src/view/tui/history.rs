//! What the TUI remembers of past reports: each RocksDB operation's QPS and P99 per interval
//! (for the sparklines) and the event log. Both only keep values the reports carried; nothing
//! here is derived beyond picking them out and bounding the memory.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ckb_probe_common::rocksdb::Op;

use crate::model::{Report, Unavailable};

/// Intervals kept per series: 10 minutes at the default 1 s, wider than any terminal.
pub const HISTORY: usize = 600;
/// Event-log entries kept (the oldest go first).
pub const LOG_KEEP: usize = 1_000;

/// One operation's series, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub qps: VecDeque<f64>,
    /// None: no call in that interval (no latency to show).
    pub p99_us: VecDeque<Option<f64>>,
}

/// Per-operation QPS and P99 over the last [`HISTORY`] intervals.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: BTreeMap<&'static str, Series>,
    /// Intervals recorded (at most [`HISTORY`] are kept).
    pub len: usize,
    /// The run's report interval, to label how much time the series span.
    pub sampling_secs: f64,
}

impl History {
    pub fn push(&mut self, r: &Report) {
        let Some(rocks) = &r.rocksdb else { return };
        self.sampling_secs = r.header.sampling_secs;
        for op in Op::ALL {
            let s = self.ops.entry(op.name()).or_default();
            let o = rocks.stats.op(op);
            if s.qps.len() == HISTORY {
                s.qps.pop_front();
                s.p99_us.pop_front();
            }
            s.qps.push_back(o.map_or(0.0, |o| o.qps));
            s.p99_us.push_back(o.and_then(|o| o.p99_us));
        }
        self.len = (self.len + 1).min(HISTORY);
    }

    pub fn series(&self, op: &str) -> Option<&Series> {
        self.ops.get(op)
    }

    /// Seconds the kept samples span.
    pub fn span_secs(&self) -> f64 {
        self.len as f64 * self.sampling_secs
    }
}

/// What an event-log entry is about (its colour and tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// What attaching found, and ckb-probe's own diagnostics.
    Info,
    /// A connection event of a P2P peer.
    Net,
    /// An anomaly, churn or correlation alert.
    Alert,
    /// An alert that ended.
    Clear,
    /// A layer that could not attach, the target's exit.
    Warn,
}

impl Level {
    pub fn tag(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Net => "NET",
            Level::Alert => "ALERT",
            Level::Clear => "OK",
            Level::Warn => "WARN",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `HH:MM:SS` (UTC, like every time ckb-probe shows).
    pub time: String,
    pub level: Level,
    pub text: String,
}

/// The event log: connection events, alerts as they start and end, notes, the run's end.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    pub entries: VecDeque<Entry>,
    /// Alerts active at the last report (identity → short label), to log each once and its
    /// end.
    active: BTreeMap<String, String>,
    /// Layers already reported unavailable.
    unavailable: BTreeSet<&'static str>,
}

/// `HH:MM:SS` out of an RFC 3339 time.
pub fn hhmmss(rfc3339: &str) -> String {
    rfc3339.get(11..19).unwrap_or(rfc3339).to_string()
}

fn endpoint(remote: &str, port: u16) -> String {
    if remote.contains(':') {
        format!("[{remote}]:{port}")
    } else {
        format!("{remote}:{port}")
    }
}

impl EventLog {
    pub fn push(&mut self, time: String, level: Level, text: String) {
        if self.entries.len() == LOG_KEEP {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry { time, level, text });
    }

    pub fn unavailable(&mut self, time: &str, u: &[Unavailable]) {
        for u in u {
            if self.unavailable.insert(u.layer.name()) {
                self.push(
                    time.to_string(),
                    Level::Warn,
                    format!("{} layer unavailable: {}", u.layer.name(), u.reason),
                );
            }
        }
    }

    /// Logs what is new in an interval report: its connection events, alerts that started,
    /// alerts that ended.
    pub fn report(&mut self, r: &Report) {
        let now = hhmmss(&r.header.timestamp);
        self.unavailable(&now, &r.unavailable);
        if let Some(n) = &r.net {
            for e in &n.events {
                let ep = endpoint(&e.remote, e.port);
                let text = match (e.kind, e.age_secs) {
                    ("close", Some(age)) => format!(
                        "close {ep} {} after {}",
                        e.direction,
                        super::super::hms(std::time::Duration::from_secs_f64(age.max(0.0)))
                    ),
                    ("close", None) => format!("close {ep} {} (never established)", e.direction),
                    (kind, _) => format!("{kind} {ep} {}", e.direction),
                };
                self.push(hhmmss(&e.time), Level::Net, text);
            }
            if n.events_dropped > 0 {
                self.push(
                    now.clone(),
                    Level::Net,
                    format!("… and {} more connection events", n.events_dropped),
                );
            }
        }
        // Alerts are reported every interval while active: log each when it starts and when
        // it ends, keyed by what identifies it.
        // (identity, label, start time, text)
        let mut active: Vec<(String, String, String, String)> = Vec::new();
        if let Some(rk) = &r.rocksdb {
            for a in &rk.anomalies {
                active.push((
                    format!("anomaly {} {}", a.operation, a.time),
                    format!("{} latency anomaly", a.operation),
                    a.time.clone(),
                    format!(
                        "{} avg latency {} is ×{:.1} its baseline ({}): {}",
                        a.operation,
                        super::super::latency(a.current_avg_us),
                        a.multiplier,
                        super::super::latency(a.baseline_avg_us),
                        a.cause
                    ),
                ));
            }
        }
        if let Some(n) = &r.net {
            for a in &n.alerts {
                active.push((
                    format!("net {} {} {:?}", a.kind, a.since, a.peer),
                    match &a.peer {
                        Some(p) => format!("{} {p}", a.kind.replace('_', " ")),
                        None => a.kind.replace('_', " "),
                    },
                    a.since.clone(),
                    a.message.clone(),
                ));
            }
        }
        for c in r.correlations.iter().flatten() {
            active.push((
                format!("corr {} {}", c.kind, c.time),
                c.kind.replace('_', " "),
                c.time.clone(),
                format!("{}: {}", c.summary, c.evidence),
            ));
        }
        let keys: BTreeMap<String, String> =
            active.iter().map(|a| (a.0.clone(), a.1.clone())).collect();
        let ended: Vec<String> = self
            .active
            .iter()
            .filter(|(k, _)| !keys.contains_key(*k))
            .map(|(_, label)| label.clone())
            .collect();
        for label in ended {
            self.push(now.clone(), Level::Clear, format!("{label} ended"));
        }
        for (key, _, time, text) in active {
            if !self.active.contains_key(&key) {
                self.push(hhmmss(&time), Level::Alert, text);
            }
        }
        self.active = keys;
    }
}
