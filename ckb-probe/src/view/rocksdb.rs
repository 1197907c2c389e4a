//! Views of the RocksDB layer: the live table (spec 6.2 A/B), per-column-family table,
//! latency histograms, and the slow-operation log.

use std::{
    collections::BTreeMap,
    time::{Duration, UNIX_EPOCH},
};

use ckb_probe_common::rocksdb::Op;

use super::{Align, Table, bytes, clock_ms, hms, latency, ns_label, thousands, us};
use crate::{
    analysis::{anomaly::Anomaly, rocksdb::RocksInterval},
    model::{self, Bucket, rocksdb::SlowOp},
};

pub struct Header<'a> {
    pub pid: u32,
    pub uptime: Duration,
    pub interval: Duration,
    pub node: &'a str,
}

pub(crate) fn rate(v: Option<f64>) -> String {
    v.map_or("—".into(), |b| format!("{}/s", bytes(b)))
}

/// The main table: one row per operation.
pub fn table(h: &Header, iv: &RocksInterval) -> String {
    let mut rows = Vec::new();
    for op in Op::ALL {
        let r = iv.op(op).cloned().unwrap_or_default();
        if op == Op::IterNext && r.count == 0 {
            continue;
        }
        rows.push(vec![
            op.name().to_string(),
            thousands(r.qps.round() as u64),
            us(r.avg_us),
            us(r.p50_us),
            us(r.p99_us),
            if op.has_bytes() {
                rate(r.bytes_per_sec)
            } else {
                "—".into()
            },
        ]);
    }
    Table {
        title: format!("CKB RocksDB Monitor (PID: {})", h.pid),
        banner: vec![format!(
            "Uptime: {}   Sampling: {}   Node: {}{}",
            hms(h.uptime),
            fmt_interval(h.interval),
            h.node,
            if iv.entry_only {
                "   Mode: lightweight"
            } else {
                ""
            }
        )],
        header: [
            "Operation",
            "QPS",
            "Avg(μs)",
            "P50(μs)",
            "P99(μs)",
            "Bytes/s",
        ]
        .map(String::from)
        .to_vec(),
        align: vec![
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        rows,
    }
    .render()
}

fn fmt_interval(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s:.1}s")
    }
}

/// The status line under the table, then each active anomaly's details.
pub fn status(anomalies: &[Anomaly], warmup_left: Duration, iv: &RocksInterval) -> String {
    let (lost, unpaired, stats_full) = (iv.lost_events, iv.unpaired, iv.stats_full);
    let mut out = String::new();
    if anomalies.is_empty() {
        if iv.entry_only {
            out.push_str(
                "  Status: lightweight mode — entry probes only: calls and PUT/WRITE bytes; no latency, GET bytes, hits, errors or anomaly detection.\n",
            );
        } else if warmup_left > Duration::ZERO {
            out.push_str(&format!(
                "  Status: ⏳ Learning baseline — anomaly detection starts in {}.\n",
                hms(warmup_left)
            ));
        } else {
            out.push_str("  Status: ✅ Normal — All latencies within baseline.\n");
        }
    } else {
        let first = &anomalies[0];
        out.push_str(&format!(
            "\n⚠️  ANOMALY DETECTED [{}]\n",
            &first.time[11..19]
        ));
        for a in anomalies {
            out.push_str(&format!(
                "  → {} avg latency {} exceeds 5× baseline ({} → {}, ×{:.1})\n",
                a.operation,
                latency(a.current_avg_us),
                latency(a.baseline_avg_us),
                latency(a.current_avg_us),
                a.multiplier
            ));
        }
        out.push_str(&format!("  → Probable cause: {}", first.cause));
        if !first.evidence.is_empty() {
            out.push_str(&format!(" ({})", first.evidence));
        }
        out.push_str(&format!(
            "\n  → Run `{}` for slow operation details.\n",
            first.next
        ));
    }
    if lost > 0 || unpaired > 0 || stats_full > 0 {
        out.push_str(&format!(
            "  Lost slow events: {lost}   Unpaired returns: {unpaired}   Not recorded (statistics map full): {stats_full}\n"
        ));
    }
    out
}

/// Per column family: which CKB column carries which load.
pub fn cf_table(iv: &RocksInterval) -> String {
    let mut rows = Vec::new();
    for cf in &iv.column_families {
        for (op, r) in &cf.operations {
            rows.push(vec![
                cf.name.clone(),
                cf.column.unwrap_or("").to_string(),
                op.to_string(),
                thousands(r.qps.round() as u64),
                us(r.avg_us),
                if r.bytes.is_some() {
                    rate(r.bytes_per_sec)
                } else {
                    "—".into()
                },
            ]);
        }
    }
    if rows.is_empty() {
        return "  (no column-family activity in this interval)\n".into();
    }
    Table {
        title: "By Column Family".into(),
        banner: vec![],
        header: ["CF", "Column", "Op", "QPS", "Avg(μs)", "Bytes/s"]
            .map(String::from)
            .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        rows,
    }
    .render()
}

/// Latency distributions, one block per operation, one bar per power of two (the kernel's
/// finer sub-buckets are folded for display).
pub fn histograms(hists: &BTreeMap<&'static str, Vec<Bucket>>, title: &str) -> String {
    const BAR: usize = 40;
    let mut out = format!("Latency histograms ({title})\n");
    for op in Op::ALL {
        let Some(h) = hists.get(op.name()) else {
            continue;
        };
        let total = model::total(h);
        if total == 0 {
            continue;
        }
        let rows = super::log2_rows(h);
        if rows.is_empty() {
            continue;
        }
        let peak = rows.iter().map(|r| r.2).max().unwrap_or(1).max(1);
        out.push_str(&format!("\n{} ({} ops)\n", op.name(), thousands(total)));
        for r in &rows {
            let len = ((r.2 as f64 / peak as f64) * BAR as f64).round() as usize;
            out.push_str(&format!(
                "  [{:>6}, {:>6}) │{:<BAR$}│ {}\n",
                ns_label(r.0),
                ns_label(r.1),
                "█".repeat(len),
                thousands(r.2)
            ));
        }
    }
    out
}

/// The slow-operation log: the most recent `shown` records out of `total` in the last 60 s.
pub fn slow_table(threshold_us: u64, recent: &[SlowOp], total: u64) -> String {
    let rows: Vec<Vec<String>> = recent
        .iter()
        .map(|r| {
            vec![
                clock_ms(UNIX_EPOCH + Duration::from_millis(r.time_ms)),
                r.op().name().to_string(),
                latency(r.latency_us()),
                r.size().map_or("—".into(), |b| bytes(b as f64)),
                r.note(),
            ]
        })
        .collect();
    let mut out = Table {
        title: format!("Slow Operations (threshold: {}μs)", thousands(threshold_us)),
        banner: vec![],
        header: ["Timestamp", "Op", "Latency", "Size", "Note"]
            .map(String::from)
            .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Left,
        ],
        rows,
    }
    .render();
    out.push_str(&format!(
        "  Showing {} of {} slow operations in last 60s.\n",
        recent.len(),
        thousands(total)
    ));
    out
}
