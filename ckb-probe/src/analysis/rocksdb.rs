//! Interval statistics of the RocksDB layer, from two cumulative snapshots.

use std::collections::BTreeMap;

use crate::model::de::Name;
use ckb_probe_common::{
    hist::BUCKETS,
    rocksdb::{CF_DEFAULT, FN_COUNT, Op, OpStats, TRACED, counter},
};
use serde::{Deserialize, Serialize};

use super::hist;
use crate::collect::rocksdb::{CfName, RocksSnapshot};

/// Statistics of one operation (or function, or column family) over an interval.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OpReport {
    pub count: u64,
    pub qps: f64,
    pub avg_us: Option<f64>,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Payload bytes (null for operations without a size: DELETE, ITER_*).
    pub bytes: Option<u64>,
    pub bytes_per_sec: Option<f64>,
    /// Null in lightweight mode (outcomes are known on return only), like `misses`, `errors`
    /// and every latency.
    pub hits: Option<u64>,
    pub misses: Option<u64>,
    /// hits / (hits + misses), GET only.
    pub hit_rate: Option<f64>,
    pub errors: Option<u64>,
    #[serde(skip)]
    pub total_ns: u64,
}

/// One column family's share of the work.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CfReport {
    /// RocksDB's family name ("0".."18" in CKB, "default", or "unknown").
    pub name: String,
    /// CKB's meaning of the column, e.g. "BLOCK_BODY".
    #[serde(deserialize_with = "crate::model::de::opt_name")]
    pub column: Option<Name>,
    #[serde(deserialize_with = "crate::model::de::name_map")]
    pub operations: BTreeMap<Name, OpReport>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RocksInterval {
    pub secs: f64,
    /// Lightweight mode: entry probes only, so counts and the bytes known at entry (PUT, WRITE)
    /// but no latency, GET bytes, hits, misses or errors.
    #[serde(default)]
    pub entry_only: bool,
    #[serde(deserialize_with = "crate::model::de::name_map")]
    pub operations: BTreeMap<Name, OpReport>,
    #[serde(deserialize_with = "crate::model::de::name_map")]
    pub functions: BTreeMap<Name, OpReport>,
    pub column_families: Vec<CfReport>,
    /// Slow events dropped because the ring buffer was full.
    pub lost_events: u64,
    /// Returns that found no entry (entry evicted, or probe attached mid-call).
    pub unpaired: u64,
    /// Column-family handles whose object layout did not validate (reported as "unknown").
    pub cf_unresolved: u64,
    /// Calls not recorded because the statistics map was full.
    pub stats_full: u64,
    /// Per operation, the interval's latency histogram (ns buckets).
    #[serde(skip)]
    pub histograms: BTreeMap<&'static str, Vec<u64>>,
}

impl RocksInterval {
    pub fn op(&self, op: Op) -> Option<&OpReport> {
        self.operations.get(op.name())
    }
}

/// CKB's column names (ckb-db-schema), for families named by number.
pub fn ckb_column(name: &str) -> Option<&'static str> {
    const COLUMNS: [&str; 19] = [
        "INDEX",
        "BLOCK_HEADER",
        "BLOCK_BODY",
        "BLOCK_UNCLE",
        "META",
        "TRANSACTION_INFO",
        "BLOCK_EXT",
        "BLOCK_PROPOSAL_IDS",
        "BLOCK_EPOCH",
        "EPOCH",
        "CELL",
        "UNCLES",
        "CELL_DATA",
        "NUMBER_HASH",
        "CELL_DATA_HASH",
        "BLOCK_EXTENSION",
        "CHAIN_ROOT_MMR",
        "BLOCK_FILTER",
        "BLOCK_FILTER_HASH",
    ];
    name.parse::<usize>()
        .ok()
        .and_then(|i| COLUMNS.get(i).copied())
}

fn stats_delta(cur: &OpStats, prev: Option<&OpStats>) -> OpStats {
    let z = OpStats::default();
    let p = prev.unwrap_or(&z);
    OpStats {
        count: cur.count.saturating_sub(p.count),
        errors: cur.errors.saturating_sub(p.errors),
        total_ns: cur.total_ns.saturating_sub(p.total_ns),
        max_ns: cur.max_ns,
        bytes: cur.bytes.saturating_sub(p.bytes),
        hits: cur.hits.saturating_sub(p.hits),
        misses: cur.misses.saturating_sub(p.misses),
        _pad: 0,
    }
}

/// Builds a report from an interval's sums. `h` is the interval histogram (ns) when known;
/// `max_ns` the exact maximum when known.
/// `light`: lightweight mode, see [`entry_known`].
fn report(
    op: Op,
    s: &OpStats,
    h: Option<&[u64]>,
    max_ns: Option<u64>,
    secs: f64,
    light: bool,
) -> OpReport {
    let us = |ns: f64| ns / 1_000.0;
    let q = |p: f64| h.and_then(|h| hist::quantile(h, p, max_ns)).map(us);
    let bytes = op.has_bytes().then_some(s.bytes);
    let looked = s.hits + s.misses;
    let r = OpReport {
        count: s.count,
        qps: if secs > 0.0 {
            s.count as f64 / secs
        } else {
            0.0
        },
        avg_us: (s.count > 0).then(|| us(s.total_ns as f64 / s.count as f64)),
        p50_us: q(0.50),
        p90_us: q(0.90),
        p99_us: q(0.99),
        max_us: if s.count == 0 {
            None
        } else {
            max_ns
                .or_else(|| h.and_then(hist::max_estimate))
                .map(|m| us(m as f64))
        },
        bytes,
        bytes_per_sec: bytes.map(|b| if secs > 0.0 { b as f64 / secs } else { 0.0 }),
        hits: Some(s.hits),
        misses: Some(s.misses),
        hit_rate: (op == Op::Get && looked > 0).then(|| s.hits as f64 / looked as f64),
        errors: Some(s.errors),
        total_ns: s.total_ns,
    };
    if light { entry_known(op, r) } else { r }
}

/// An entry-only report: what the entry probe does not know is absent, not zero.
fn entry_known(op: Op, r: OpReport) -> OpReport {
    let bytes = r.bytes.filter(|_| op != Op::Get);
    OpReport {
        avg_us: None,
        p50_us: None,
        p90_us: None,
        p99_us: None,
        max_us: None,
        bytes,
        bytes_per_sec: r.bytes_per_sec.filter(|_| bytes.is_some()),
        hits: None,
        misses: None,
        hit_rate: None,
        errors: None,
        total_ns: 0,
        ..r
    }
}

/// The interval between `prev` and `cur` (for a whole-run summary, `prev` is the empty
/// snapshot taken at attach time). `entry_only`: the snapshots come from lightweight mode.
pub fn interval(
    prev: &RocksSnapshot,
    cur: &RocksSnapshot,
    names: &BTreeMap<u64, CfName>,
    entry_only: bool,
) -> RocksInterval {
    let secs = cur.at.duration_since(prev.at).as_secs_f64();
    // Per function: summed deltas, exact cumulative max before and after.
    let mut fn_sum = vec![OpStats::default(); FN_COUNT];
    let mut fn_max = vec![(0u64, 0u64); FN_COUNT];
    let mut cf_sum: BTreeMap<&str, BTreeMap<&'static str, (Op, OpStats)>> = BTreeMap::new();
    for (&(fid, cf), row) in &cur.rows {
        let Some(f) = TRACED.get(fid as usize) else {
            continue;
        };
        let prev_row = prev.rows.get(&(fid, cf));
        let d = stats_delta(row, prev_row);
        let slot = &mut fn_sum[fid as usize];
        slot.merge(&OpStats { max_ns: 0, ..d });
        fn_max[fid as usize].0 = fn_max[fid as usize].0.max(prev_row.map_or(0, |p| p.max_ns));
        fn_max[fid as usize].1 = fn_max[fid as usize].1.max(row.max_ns);
        if d.count > 0 {
            let name = match cf {
                CF_DEFAULT => "default",
                h => names.get(&h).map_or("unknown", |n| n.name.as_str()),
            };
            let e = cf_sum
                .entry(name)
                .or_default()
                .entry(f.op.name())
                .or_insert((f.op, OpStats::default()));
            e.1.merge(&OpStats { max_ns: 0, ..d });
        }
    }
    // A cumulative maximum that grew during the interval was reached in it: exact.
    let exact_max = |(before, after): (u64, u64)| (after > before).then_some(after);

    let mut functions = BTreeMap::new();
    // Per operation: summed stats, summed histogram, (max before, max after).
    type OpAcc = (OpStats, Vec<u64>, (u64, u64));
    let mut op_sum: BTreeMap<Op, OpAcc> = BTreeMap::new();
    for (fid, f) in TRACED.iter().enumerate() {
        let h = hist::delta(&cur.hist[fid][..], &prev.hist[fid][..]);
        let s = &fn_sum[fid];
        if s.count > 0 {
            functions.insert(
                f.symbol,
                report(f.op, s, Some(&h), exact_max(fn_max[fid]), secs, entry_only),
            );
        }
        let e = op_sum
            .entry(f.op)
            .or_insert_with(|| (OpStats::default(), vec![0; BUCKETS], (0, 0)));
        e.0.merge(s);
        hist::add(&mut e.1, &h);
        e.2.0 = e.2.0.max(fn_max[fid].0);
        e.2.1 = e.2.1.max(fn_max[fid].1);
    }
    let histograms = op_sum
        .iter()
        .map(|(op, (_, h, _))| (op.name(), h.clone()))
        .collect();
    let operations = op_sum
        .iter()
        .map(|(op, (s, h, m))| {
            (
                op.name(),
                report(*op, s, Some(h), exact_max(*m), secs, entry_only),
            )
        })
        .collect();
    // CKB's columns are numbers: "2" before "10".
    let mut cf_sum: Vec<_> = cf_sum.into_iter().collect();
    let number = |name: &str| name.parse::<u64>().unwrap_or(u64::MAX);
    cf_sum.sort_by(|(a, _), (b, _)| (number(a), a).cmp(&(number(b), b)));
    let column_families = cf_sum
        .into_iter()
        .map(|(name, ops)| CfReport {
            column: ckb_column(name),
            operations: ops
                .into_iter()
                .map(|(k, (op, s))| (k, report(op, &s, None, None, secs, entry_only)))
                .collect(),
            name: name.to_string(),
        })
        .collect();
    let c = |i: u32| cur.counters[i as usize].saturating_sub(prev.counters[i as usize]);
    RocksInterval {
        secs,
        entry_only,
        operations,
        functions,
        column_families,
        lost_events: c(counter::RING_DROPS),
        unpaired: c(counter::UNPAIRED),
        cf_unresolved: c(counter::CF_INVALID),
        stats_full: c(counter::STATS_FULL),
        histograms,
    }
}
