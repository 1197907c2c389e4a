//! Exact per-function bookkeeping: per-thread counters (no sharing on the hot path), merged into
//! the ground-truth JSON at exit.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Column family names in handle order: index 0 is RocksDB's mandatory "default", then CKB's
/// 19 columns "0".."18".
pub const CF_NAMES: [&str; NUM_CFS] = [
    "default", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14",
    "15", "16", "17", "18",
];
pub const NUM_CFS: usize = 20;
/// Handle index of the "default" column family.
pub const DEFAULT_CF: usize = 0;

/// Latency categories for the live per-second view and the storm/normal comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cat {
    Get,
    Put,
    Delete,
    Commit,
    Write,
    Iter,
    Compact,
}

pub const NUM_CATS: usize = 7;
pub const CAT_NAMES: [&str; NUM_CATS] =
    ["get", "put", "delete", "commit", "write", "iter", "compact"];

macro_rules! funcs {
    ($( $variant:ident = $name:literal, $cat:expr; )*) => {
        /// Every RocksDB C function the workload calls during the measured phase.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Func { $($variant),* }

        impl Func {
            pub const ALL: &'static [Func] = &[$(Func::$variant),*];

            /// The C symbol name.
            pub fn name(self) -> &'static str {
                match self { $(Func::$variant => $name),* }
            }

            /// Timed functions are the ones ckb-probe traces (plus the storm's compactions);
            /// `None` marks bookkeeping helpers that are counted but not timed.
            pub fn cat(self) -> Option<Cat> {
                match self { $(Func::$variant => $cat),* }
            }
        }
    };
}

funcs! {
    GetPinnedCf = "rocksdb_get_pinned_cf", Some(Cat::Get);
    TxnGetPinnedCf = "rocksdb_transaction_get_pinned_cf", Some(Cat::Get);
    TxnGetForUpdateCf = "rocksdb_transaction_get_for_update_cf", Some(Cat::Get);
    GetPinned = "rocksdb_get_pinned", Some(Cat::Get);
    Get = "rocksdb_get", Some(Cat::Get);
    GetCf = "rocksdb_get_cf", Some(Cat::Get);
    TxnPutCf = "rocksdb_transaction_put_cf", Some(Cat::Put);
    Put = "rocksdb_put", Some(Cat::Put);
    PutCf = "rocksdb_put_cf", Some(Cat::Put);
    WbPutCf = "rocksdb_writebatch_put_cf", Some(Cat::Put);
    WbPut = "rocksdb_writebatch_put", Some(Cat::Put);
    TxnDeleteCf = "rocksdb_transaction_delete_cf", Some(Cat::Delete);
    Delete = "rocksdb_delete", Some(Cat::Delete);
    DeleteCf = "rocksdb_delete_cf", Some(Cat::Delete);
    WbDeleteCf = "rocksdb_writebatch_delete_cf", Some(Cat::Delete);
    WbDelete = "rocksdb_writebatch_delete", Some(Cat::Delete);
    TxnCommit = "rocksdb_transaction_commit", Some(Cat::Commit);
    Write = "rocksdb_write", Some(Cat::Write);
    IterSeek = "rocksdb_iter_seek", Some(Cat::Iter);
    IterSeekForPrev = "rocksdb_iter_seek_for_prev", Some(Cat::Iter);
    IterSeekToFirst = "rocksdb_iter_seek_to_first", Some(Cat::Iter);
    IterSeekToLast = "rocksdb_iter_seek_to_last", Some(Cat::Iter);
    IterNext = "rocksdb_iter_next", Some(Cat::Iter);
    CompactRangeCf = "rocksdb_compact_range_cf", Some(Cat::Compact);
    TxnBegin = "rocksdb_optimistictransaction_begin", None;
    TxnDestroy = "rocksdb_transaction_destroy", None;
    PinnableSliceValue = "rocksdb_pinnableslice_value", None;
    PinnableSliceDestroy = "rocksdb_pinnableslice_destroy", None;
    Free = "rocksdb_free", None;
    WbCreate = "rocksdb_writebatch_create", None;
    WbDestroy = "rocksdb_writebatch_destroy", None;
    CreateIteratorCf = "rocksdb_create_iterator_cf", None;
    IterValid = "rocksdb_iter_valid", None;
    IterGetError = "rocksdb_iter_get_error", None;
    IterDestroy = "rocksdb_iter_destroy", None;
}

pub const NUM_FUNCS: usize = Func::ALL.len();

/// What one call returned, as the eBPF side classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Non-GET call that returned without an error.
    Ok,
    /// errptr came back non-NULL.
    Error,
    /// GET returned a value of this many bytes.
    Hit(u64),
    /// GET returned NULL without an error.
    Miss,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub calls: u64,
    pub errors: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.hits += o.hits;
        self.misses += o.misses;
        self.bytes += o.bytes;
    }
}

struct FuncStats {
    per_cf: [Counts; NUM_CFS],
    latencies: Vec<u64>,
}

/// Per-category running totals that the `--verbose` monitor reads once a second. Each instance
/// has a single writer (its worker thread), so updates are a relaxed load+store, not a locked RMW.
#[repr(align(128))] // own cache line(s): no false sharing between workers
#[derive(Default)]
pub struct Live {
    pub iterations: AtomicU64,
    pub sum_ns: [AtomicU64; NUM_CATS],
    pub count: [AtomicU64; NUM_CATS],
}

fn bump(a: &AtomicU64, by: u64) {
    a.store(
        a.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// Latency sums split by phase, to compare the storm against normal operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseLat {
    pub sum_ns: u64,
    pub count: u64,
}

/// One thread's bookkeeping; merged with the others' by [`merge`] once every thread is done.
pub struct ThreadStats {
    funcs: Vec<FuncStats>,
    pub iterations: u64,
    /// CPU time the thread spent in its measured phase (user + kernel, uprobe handlers
    /// included), in ns: unlike wall time, not inflated by other load on the machine.
    pub cpu_ns: u64,
    /// `[normal, storm][category]`.
    pub phase: [[PhaseLat; NUM_CATS]; 2],
    pub in_storm: bool,
    pub live: Arc<Live>,
    /// Whether `record` keeps each latency (for the ground truth's percentiles).
    pub keep_latencies: bool,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats::new()
    }
}

impl ThreadStats {
    pub fn new() -> ThreadStats {
        let funcs = (0..NUM_FUNCS)
            .map(|_| FuncStats {
                per_cf: [Counts::default(); NUM_CFS],
                latencies: Vec::new(),
            })
            .collect();
        ThreadStats {
            funcs,
            iterations: 0,
            cpu_ns: 0,
            phase: [[PhaseLat::default(); NUM_CATS]; 2],
            in_storm: false,
            live: Arc::new(Live::default()),
            keep_latencies: true,
        }
    }

    /// As `new`, keeping each call's latency or not.
    pub fn with_latencies(keep: bool) -> ThreadStats {
        ThreadStats {
            keep_latencies: keep,
            ..ThreadStats::new()
        }
    }

    /// Counts one call of an untimed helper.
    pub fn count(&mut self, f: Func, cf: usize, outcome: Outcome) {
        let c = &mut self.funcs[f as usize].per_cf[cf];
        c.calls += 1;
        match outcome {
            Outcome::Ok => {}
            Outcome::Error => c.errors += 1,
            Outcome::Hit(_) => c.hits += 1,
            Outcome::Miss => c.misses += 1,
        }
    }

    /// Counts one call of a traced function that took `ns` and moved `bytes` (per the byte rules,
    /// computed by the caller).
    pub fn record(&mut self, f: Func, cf: usize, outcome: Outcome, bytes: u64, ns: u64) {
        self.count(f, cf, outcome);
        let fs = &mut self.funcs[f as usize];
        fs.per_cf[cf].bytes += bytes;
        if self.keep_latencies {
            fs.latencies.push(ns);
        }
        if let Some(cat) = f.cat() {
            let p = &mut self.phase[usize::from(self.in_storm)][cat as usize];
            p.sum_ns += ns;
            p.count += 1;
            bump(&self.live.sum_ns[cat as usize], ns);
            bump(&self.live.count[cat as usize], 1);
        }
    }

    pub fn finish_iteration(&mut self) {
        self.iterations += 1;
        bump(&self.live.iterations, 1);
    }
}

#[derive(Debug, Serialize)]
pub struct FuncTruth {
    #[serde(flatten)]
    pub total: Counts,
    pub per_cf: BTreeMap<String, Counts>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

/// Nearest-rank percentiles over `samples` (sorted in place); `None` when empty.
pub fn summarize(samples: &mut [u64]) -> Option<LatencySummary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let rank = |p: u64| {
        // Nearest rank: ceil(p/100 * n), 1-based.
        let r = (p as u128 * n as u128).div_ceil(100) as usize;
        samples[r.clamp(1, n) - 1]
    };
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Some(LatencySummary {
        count: n as u64,
        p50: rank(50),
        p90: rank(90),
        p99: rank(99),
        max: samples[n - 1],
        mean: (sum / n as u128) as u64,
    })
}

#[derive(Debug, Serialize)]
pub struct PhaseMeans {
    pub count: u64,
    pub mean_ns: u64,
}

/// Extra top-level object, present only when a storm was configured.
#[derive(Debug, Serialize)]
pub struct StormTruth {
    pub after_secs: f64,
    pub secs: f64,
    /// Period of repeated storms (start to start), when `--storm-every` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<f64>,
    /// Mean latency per category outside and inside the storm window.
    pub normal: BTreeMap<&'static str, PhaseMeans>,
    pub storm: BTreeMap<&'static str, PhaseMeans>,
}

#[derive(Debug, Serialize)]
pub struct GroundTruth {
    pub pid: u32,
    pub link_mode: &'static str,
    pub duration_secs: f64,
    /// CPU seconds of the worker threads in the measured phase (see [`ThreadStats::cpu_ns`]).
    pub worker_cpu_secs: f64,
    pub threads: u32,
    pub iterations: u64,
    pub functions: BTreeMap<&'static str, FuncTruth>,
    pub latency_ns: BTreeMap<&'static str, LatencySummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormTruth>,
}

/// Merged view of all threads.
pub struct Merged {
    pub iterations: u64,
    pub cpu_ns: u64,
    pub functions: BTreeMap<&'static str, FuncTruth>,
    pub latency_ns: BTreeMap<&'static str, LatencySummary>,
    pub phase: [[PhaseLat; NUM_CATS]; 2],
}

/// Merges per-thread stats. Functions never called are left out.
pub fn merge(threads: Vec<ThreadStats>) -> Merged {
    let mut iterations = 0;
    let mut cpu_ns = 0;
    let mut phase = [[PhaseLat::default(); NUM_CATS]; 2];
    let mut per_func: Vec<([Counts; NUM_CFS], Vec<u64>)> = (0..NUM_FUNCS)
        .map(|_| ([Counts::default(); NUM_CFS], Vec::new()))
        .collect();
    for t in threads {
        iterations += t.iterations;
        cpu_ns += t.cpu_ns;
        for (dst, src) in phase.iter_mut().flatten().zip(t.phase.iter().flatten()) {
            dst.sum_ns += src.sum_ns;
            dst.count += src.count;
        }
        for (dst, src) in per_func.iter_mut().zip(t.funcs) {
            for (d, s) in dst.0.iter_mut().zip(src.per_cf.iter()) {
                d.add(s);
            }
            if dst.1.is_empty() {
                dst.1 = src.latencies;
            } else {
                dst.1.extend_from_slice(&src.latencies);
            }
        }
    }
    let mut functions = BTreeMap::new();
    let mut latency_ns = BTreeMap::new();
    for (&f, (per_cf, mut lat)) in Func::ALL.iter().zip(per_func) {
        let mut total = Counts::default();
        let mut cfs = BTreeMap::new();
        for (i, c) in per_cf.iter().enumerate() {
            if c.calls > 0 {
                total.add(c);
                cfs.insert(CF_NAMES[i].to_string(), *c);
            }
        }
        if total.calls == 0 {
            continue;
        }
        functions.insert(f.name(), FuncTruth { total, per_cf: cfs });
        if let Some(s) = summarize(&mut lat) {
            latency_ns.insert(f.name(), s);
        }
    }
    Merged {
        iterations,
        cpu_ns,
        functions,
        latency_ns,
        phase,
    }
}

pub fn phase_means(phase: &[PhaseLat; NUM_CATS]) -> BTreeMap<&'static str, PhaseMeans> {
    CAT_NAMES
        .iter()
        .zip(phase.iter())
        .filter(|(_, p)| p.count > 0)
        .map(|(&name, p)| {
            (
                name,
                PhaseMeans {
                    count: p.count,
                    mean_ns: p.sum_ns / p.count,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&mut v).unwrap();
        assert_eq!(
            s,
            LatencySummary {
                count: 100,
                p50: 50,
                p90: 90,
                p99: 99,
                max: 100,
                mean: 50
            }
        );
        let mut one = vec![7];
        let s = summarize(&mut one).unwrap();
        assert_eq!((s.p50, s.p99, s.max, s.mean), (7, 7, 7, 7));
        assert!(summarize(&mut []).is_none());
        let mut v = vec![10, 20, 30];
        let s = summarize(&mut v).unwrap();
        assert_eq!((s.p50, s.p90, s.p99), (20, 30, 30));
    }

    #[test]
    fn merge_sums_threads_and_cfs() {
        let mut a = ThreadStats::new();
        let mut b = ThreadStats::new();
        a.record(Func::GetPinnedCf, 3, Outcome::Hit(100), 100, 5);
        a.record(Func::GetPinnedCf, 4, Outcome::Miss, 0, 6);
        b.record(Func::GetPinnedCf, 3, Outcome::Error, 0, 7);
        b.count(Func::IterValid, 2, Outcome::Ok);
        a.finish_iteration();
        b.finish_iteration();
        let m = merge(vec![a, b]);
        assert_eq!(m.iterations, 2);
        let g = &m.functions["rocksdb_get_pinned_cf"];
        assert_eq!(
            g.total,
            Counts {
                calls: 3,
                errors: 1,
                hits: 1,
                misses: 1,
                bytes: 100
            }
        );
        assert_eq!(g.per_cf["2"].calls, 2);
        assert_eq!(g.per_cf["3"].calls, 1);
        assert_eq!(m.latency_ns["rocksdb_get_pinned_cf"].count, 3);
        assert!(!m.latency_ns.contains_key("rocksdb_iter_valid"));
        assert_eq!(m.functions["rocksdb_iter_valid"].per_cf["1"].calls, 1);
        assert!(!m.functions.contains_key("rocksdb_put"));
    }
}
