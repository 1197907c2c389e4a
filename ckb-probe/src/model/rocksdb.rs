//! The RocksDB layer's part of a report.

use std::collections::BTreeMap;

use ckb_probe_common::rocksdb::{Op, SLOW_FLAG_ERROR, SLOW_FLAG_MISS, SlowEvent, TRACED, fn_id};
use serde::{Deserialize, Serialize};

use super::de::Name;
use super::{Bucket, de};
use crate::analysis::{anomaly::Anomaly, rocksdb::RocksInterval};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RocksSection {
    /// Per operation, function and column family, over the report's span (the whole run for a
    /// summary), with the layer's loss counters.
    pub stats: RocksInterval,
    /// Active latency anomalies (interval reports).
    pub anomalies: Vec<Anomaly>,
    /// Seconds of baseline learning left before anomalies may fire.
    pub warmup_left_secs: f64,
    /// Latency distribution per operation since the probes were attached.
    #[serde(deserialize_with = "de::name_map")]
    pub histograms: BTreeMap<Name, Vec<Bucket>>,
    /// The slow-operation log, when a threshold is set.
    pub slow: Option<SlowLog>,
    /// How the probes were placed (every live report: a live view such as the exporter shows
    /// it while the run goes on; NDJSON writes it in the summary only).
    pub attach: Option<Attach>,
}

/// Slow operations: the interval's, and the recent ones for a log view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowLog {
    pub threshold_us: u64,
    /// This interval's slow operations, oldest first.
    pub ops: Vec<SlowOp>,
    /// Slow operations of this interval not kept in `ops` (a flood beyond the cap).
    pub dropped: u64,
    /// The most recent slow operations of the last 60 s, oldest first.
    pub recent: Vec<SlowOp>,
    /// Slow operations in the last 60 s.
    pub last_60s: u64,
    /// Slow operations since attach.
    pub total: u64,
}

/// Where the layer's probes went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attach {
    pub attached: Vec<String>,
    /// Functions not traced, with the reason.
    pub missing: Vec<Missing>,
    /// Functions whose first instruction the kernel single-steps (a few µs more per call).
    pub single_stepped: Vec<String>,
    /// How the uprobes were attached: `uprobe_multi` or `perf_event` (empty in recordings made
    /// before the field existed).
    #[serde(default)]
    pub uprobes: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Missing {
    pub function: String,
    pub reason: String,
}

/// One slow operation. Kept compact (no string per event); labels are made when shown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowOp {
    /// Wall-clock time the call returned, ms since the Unix epoch.
    pub time_ms: u64,
    pub fn_id: u32,
    pub latency_ns: u64,
    pub bytes: u64,
    pub column_family: &'static str,
    pub tid: u32,
    pub flags: u32,
}

impl SlowOp {
    pub fn new(time_ms: u64, ev: &SlowEvent, column_family: &'static str) -> Self {
        SlowOp {
            time_ms,
            fn_id: ev.fn_id,
            latency_ns: ev.latency_ns,
            bytes: ev.bytes,
            column_family,
            tid: ev.tid,
            flags: ev.flags,
        }
    }

    pub fn op(&self) -> Op {
        TRACED.get(self.fn_id as usize).map_or(Op::Get, |f| f.op)
    }

    pub fn function(&self) -> &'static str {
        TRACED.get(self.fn_id as usize).map_or("?", |f| f.symbol)
    }

    pub fn latency_us(&self) -> f64 {
        self.latency_ns as f64 / 1_000.0
    }

    /// Payload bytes, for operations that carry a size.
    pub fn size(&self) -> Option<u64> {
        self.op().has_bytes().then_some(self.bytes)
    }

    /// `batch write`, `txn commit`, `error`, `miss`, `cf 10`.
    pub fn note(&self) -> String {
        let mut notes = Vec::new();
        match self.fn_id {
            fn_id::WRITE => notes.push("batch write"),
            fn_id::TXN_COMMIT => notes.push("txn commit"),
            _ => {}
        }
        if self.flags & SLOW_FLAG_ERROR != 0 {
            notes.push("error");
        }
        if self.flags & SLOW_FLAG_MISS != 0 {
            notes.push("miss");
        }
        let mut s = notes.join(", ");
        if !self.column_family.is_empty() && self.column_family != "default" {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str("cf ");
            s.push_str(self.column_family);
        }
        s
    }
}

/// The JSON form of a slow operation (the public NDJSON field names).
#[derive(Serialize, Deserialize)]
struct SlowOpJson<'a> {
    time: String,
    time_ms: u64,
    operation: &'a str,
    function: &'a str,
    latency_us: f64,
    bytes: Option<u64>,
    column_family: &'a str,
    tid: u32,
    note: String,
}

impl Serialize for SlowOp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SlowOpJson {
            time: crate::view::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.time_ms),
            ),
            time_ms: self.time_ms,
            operation: self.op().name(),
            function: self.function(),
            latency_us: self.latency_us(),
            bytes: self.size(),
            column_family: self.column_family,
            tid: self.tid,
            note: self.note(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SlowOp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Owned {
            time_ms: u64,
            function: String,
            latency_us: f64,
            bytes: Option<u64>,
            column_family: String,
            tid: u32,
            note: String,
        }
        let o = Owned::deserialize(d)?;
        let fn_id = TRACED
            .iter()
            .position(|f| f.symbol == o.function)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown function {}", o.function)))?
            as u32;
        let mut flags = 0;
        for part in o.note.split(", ") {
            match part {
                "error" => flags |= SLOW_FLAG_ERROR,
                "miss" => flags |= SLOW_FLAG_MISS,
                _ => {}
            }
        }
        Ok(SlowOp {
            time_ms: o.time_ms,
            fn_id,
            latency_ns: (o.latency_us * 1_000.0).round() as u64,
            bytes: o.bytes.unwrap_or(0),
            column_family: de::intern(&o.column_family),
            tid: o.tid,
            flags,
        })
    }
}
