//! Latency-spike detection (spec 5.7): per operation, the average latency over a sliding
//! window (10 s) is compared with an EWMA baseline (alpha 0.3) learnt from past windows;
//! an alert fires when it exceeds the baseline by a factor (5x). No alert during warm-up.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use crate::model::de::Name;
use ckb_probe_common::rocksdb::Op;
use serde::{Deserialize, Serialize};

use super::{
    baseline::{BaselineConfig, WindowedBaseline},
    rocksdb::RocksInterval,
};

#[derive(Clone, Copy, Debug)]
pub struct DetectorConfig {
    pub alpha: f64,
    pub factor: f64,
    pub window: Duration,
    pub warmup: Duration,
    /// Fewer operations than this in a window say nothing about latency.
    pub min_ops: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            alpha: 0.3,
            factor: 5.0,
            window: Duration::from_secs(10),
            warmup: Duration::from_secs(300),
            min_ops: 10,
        }
    }
}

/// An active anomaly, as shown in the table and in JSON `anomalies`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Anomaly {
    /// Wall-clock time the anomaly started, RFC 3339.
    pub time: String,
    #[serde(rename = "type", deserialize_with = "crate::model::de::name")]
    pub kind: Name,
    #[serde(deserialize_with = "crate::model::de::name")]
    pub operation: Name,
    pub current_avg_us: f64,
    pub baseline_avg_us: f64,
    pub multiplier: f64,
    pub cause: String,
    pub evidence: String,
    pub next: String,
}

struct OpState {
    latency: WindowedBaseline,
    active_since: Option<SystemTime>,
}

pub struct LatencyDetector {
    cfg: DetectorConfig,
    start: Instant,
    ops: BTreeMap<Op, OpState>,
}

impl LatencyDetector {
    pub fn new(cfg: DetectorConfig, start: Instant) -> Self {
        LatencyDetector {
            cfg,
            start,
            ops: BTreeMap::new(),
        }
    }

    pub fn warming_up(&self, now: Instant) -> bool {
        now.duration_since(self.start) < self.cfg.warmup
    }

    pub fn warmup_left(&self, now: Instant) -> Duration {
        self.cfg
            .warmup
            .saturating_sub(now.duration_since(self.start))
    }

    /// Feeds one interval; returns the anomalies active after it.
    pub fn observe(&mut self, now: Instant, iv: &RocksInterval) -> Vec<Anomaly> {
        let warm = !self.warming_up(now);
        let cfg = self.cfg;
        let mut spiking = Vec::new();
        for op in Op::ALL {
            let r = iv.op(op);
            let st = self.ops.entry(op).or_insert_with(|| OpState {
                latency: WindowedBaseline::new(BaselineConfig {
                    alpha: cfg.alpha,
                    factor: cfg.factor,
                    window: cfg.window,
                    min_den: cfg.min_ops as f64,
                }),
                active_since: None,
            });
            let reading = st.latency.observe(
                now,
                r.map_or(0.0, |r| r.total_ns as f64),
                r.map_or(0.0, |r| r.count as f64),
            );
            if warm && reading.spike {
                let since = *st.active_since.get_or_insert_with(SystemTime::now);
                let a = reading.current.unwrap_or(0.0);
                let b = reading.baseline.unwrap_or(0.0);
                spiking.push((op, since, a, b));
            } else {
                st.active_since = None;
            }
        }
        let ops: Vec<Op> = spiking.iter().map(|s| s.0).collect();
        spiking
            .into_iter()
            .map(|(op, since, a, b)| {
                let (cause, evidence, next) = diagnose(op, &ops, iv, b);
                Anomaly {
                    time: crate::view::rfc3339(since),
                    kind: "latency_spike",
                    operation: op.name(),
                    current_avg_us: round1(a / 1_000.0),
                    baseline_avg_us: round1(b / 1_000.0),
                    multiplier: round1(a / b),
                    cause,
                    evidence,
                    next,
                }
            })
            .collect()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The column family with the largest share of `op`'s time in the interval.
fn dominant_cf(iv: &RocksInterval, op: Op) -> Option<String> {
    let total: u64 = iv
        .column_families
        .iter()
        .filter_map(|c| c.operations.get(op.name()))
        .map(|r| r.total_ns)
        .sum();
    let top = iv
        .column_families
        .iter()
        .filter_map(|c| c.operations.get(op.name()).map(|r| (c, r.total_ns)))
        .max_by_key(|(_, t)| *t)?;
    if total == 0 || top.0.name == "default" || top.0.name == "unknown" {
        return None;
    }
    let label = top.0.column.map_or(String::new(), |c| format!(" ({c})"));
    Some(format!(
        "column {}{label} holds {:.0}% of {} time",
        top.0.name,
        100.0 * top.1 as f64 / total as f64,
        op.name()
    ))
}

/// A probable cause with its evidence and the next command, from what spikes together.
fn diagnose(
    op: Op,
    spiking: &[Op],
    iv: &RocksInterval,
    baseline_ns: f64,
) -> (String, String, String) {
    let fmt_us = |us: f64| {
        if us >= 1_000.0 {
            format!("{:.1}ms", us / 1_000.0)
        } else {
            format!("{us:.1}μs")
        }
    };
    let p99 = |o: Op| iv.op(o).and_then(|r| r.p99_us);
    let threshold_us = ((baseline_ns / 1_000.0) * 5.0).ceil().max(1.0) as u64;
    let next_slow = format!("ckb-probe rocksdb --slow --threshold {threshold_us}");
    let mut evidence = Vec::new();
    if let (true, Some(w)) = (
        spiking.contains(&Op::Write) || op == Op::Put,
        p99(Op::Write),
    ) {
        evidence.push(format!("WRITE P99 = {}", fmt_us(w)));
    }
    if let Some(d) = dominant_cf(iv, op) {
        evidence.push(d);
    }
    let cause = if spiking.contains(&Op::Write) {
        "Compaction storm or write stall: commits wait on WAL sync or L0 backpressure".to_string()
    } else if op == Op::Get {
        let hr = iv
            .op(Op::Get)
            .and_then(|r| r.hit_rate)
            .map_or(String::new(), |h| format!(" (hit rate {:.0}%)", h * 100.0));
        evidence.push(format!(
            "GET P99 = {}{hr}",
            p99(Op::Get).map_or("-".into(), fmt_us)
        ));
        "Read-path slowdown: block-cache misses or compaction I/O competing with reads".to_string()
    } else if op == Op::IterSeek || op == Op::IterNext {
        "Iterator slowdown: many tombstones or a compaction backlog in the scanned range"
            .to_string()
    } else {
        format!("{} latency spike", op.name())
    };
    (cause, evidence.join("; "), next_slow)
}
