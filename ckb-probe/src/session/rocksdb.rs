//! The RocksDB layer of a run: its collector, slow log and anomaly detector.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use ckb_probe_common::{
    config::{CONFIG_FLAG_CF, CONFIG_FLAG_ENTRY_ONLY, Config},
    rocksdb::{CF_DEFAULT, SlowEvent, TRACED},
};

use crate::{
    analysis::{
        anomaly::{Anomaly, DetectorConfig, LatencyDetector},
        hist,
        rocksdb::interval,
    },
    collect::{
        clock::MonoClock,
        rocksdb::{CfName, RocksCollector, RocksSnapshot},
    },
    error::InputError,
    model::{
        self, de,
        rocksdb::{Attach, Missing, RocksSection, SlowLog, SlowOp},
    },
    probe::{
        Engine,
        rocksdb::{self as rprobe, RocksAttach},
    },
    symbols,
    target::Process,
};

/// RocksDB options of a run.
#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// Record operations at or above this many µs in the slow log (none: no slow log).
    pub slow_threshold_us: Option<u64>,
    /// Resolve column families (reads RocksDB's objects in the target).
    pub cf: bool,
    /// Trace `rocksdb_iter_next` (single-stepped: costly under heavy iteration).
    pub iter_next: bool,
    /// Lightweight mode: entry probes only (calls and the bytes known at entry; no latency,
    /// outcome or slow log).
    pub lightweight: bool,
    /// Take the function offsets from this unstripped build of the target's binary (same
    /// build-id) when the running binary is stripped.
    pub symbols_from: Option<std::path::PathBuf>,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            slow_threshold_us: None,
            cf: true,
            iter_next: true,
            lightweight: false,
            symbols_from: None,
        }
    }
}

/// The kernel configuration the RocksDB layer needs.
pub fn config(pid: u32, opts: &RocksOptions) -> Config {
    Config {
        tgid: pid,
        flags: if opts.cf { CONFIG_FLAG_CF } else { 0 }
            | if opts.lightweight {
                CONFIG_FLAG_ENTRY_ONLY
            } else {
                0
            },
        // Lightweight mode has no return probe, so no slow log (and no slow-event buffer).
        slow_threshold_ns: opts
            .slow_threshold_us
            .filter(|_| !opts.lightweight)
            .map_or(u64::MAX, |t| t.saturating_mul(1_000)),
    }
}

/// Slow operations kept for a log view.
const RECENT_KEEP: usize = 1_000;
/// Slow operations of one interval kept for its report.
const FRESH_MAX: usize = 100_000;
/// Recent slow operations a report carries.
const RECENT_IN_REPORT: usize = 50;

/// The slow log's state: a bounded list of recent events, exact per-second counts, and the
/// events of the current interval. Raw records are kept (the column family's name may only be
/// known at the next read of the kernel's map); labels are made when a report is.
#[derive(Default)]
struct SlowState {
    recent: VecDeque<(u64, SlowEvent)>,
    per_sec: VecDeque<(u64, u64)>,
    fresh: Vec<(u64, SlowEvent)>,
    dropped_fresh: u64,
    total: u64,
}

impl SlowState {
    fn push(&mut self, time_ms: u64, ev: SlowEvent) {
        let sec = time_ms / 1_000;
        match self.per_sec.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => self.per_sec.push_back((sec, 1)),
        }
        self.total += 1;
        if self.fresh.len() < FRESH_MAX {
            self.fresh.push((time_ms, ev));
        } else {
            self.dropped_fresh += 1;
        }
        if self.recent.len() == RECENT_KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back((time_ms, ev));
    }

    /// Forgets what is older than 60 s; returns the count of the last 60 s.
    fn last_60s(&mut self, now: SystemTime) -> u64 {
        let now_ms = ms(now);
        let now_s = now_ms / 1_000;
        while self.per_sec.front().is_some_and(|(s, _)| s + 60 <= now_s) {
            self.per_sec.pop_front();
        }
        let cutoff = now_ms.saturating_sub(60_000);
        while self.recent.front().is_some_and(|(t, _)| *t < cutoff) {
            self.recent.pop_front();
        }
        self.per_sec.iter().map(|(_, n)| n).sum()
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Column-family labels by handle, interned once per handle.
#[derive(Default)]
struct CfLabels(BTreeMap<u64, &'static str>);

impl CfLabels {
    fn refresh(&mut self, names: &BTreeMap<u64, CfName>) {
        for (h, n) in names {
            self.0.entry(*h).or_insert_with(|| de::intern(&n.name));
        }
    }

    fn get(&self, cf: u64) -> &'static str {
        match cf {
            CF_DEFAULT => "default",
            h => self.0.get(&h).copied().unwrap_or("unknown"),
        }
    }

    fn op(&self, (time_ms, ev): &(u64, SlowEvent)) -> SlowOp {
        SlowOp::new(*time_ms, ev, self.get(ev.cf))
    }
}

fn sparse_all(h: &BTreeMap<&'static str, Vec<u64>>) -> BTreeMap<&'static str, Vec<model::Bucket>> {
    h.iter().map(|(op, h)| (*op, model::sparse(h))).collect()
}

pub struct RocksLayer {
    opts: RocksOptions,
    collector: RocksCollector,
    attach: RocksAttach,
    clock: MonoClock,
    first: RocksSnapshot,
    prev: RocksSnapshot,
    detector: LatencyDetector,
    slow: SlowState,
    /// Column-family names as last read (a handle's name never changes).
    names: BTreeMap<u64, CfName>,
    labels: CfLabels,
}

impl RocksLayer {
    /// Finds the target's RocksDB functions and attaches to them.
    pub fn open(
        engine: &mut Engine,
        process: &Process,
        mut opts: RocksOptions,
        warmup: Duration,
        notes: &mut Vec<String>,
    ) -> Result<Self> {
        if opts.lightweight {
            // Latencies are measured on return, which lightweight mode does not probe.
            opts.slow_threshold_us = None;
        }
        let pid = process.pid;
        let sites = match &opts.symbols_from {
            Some(from) => symbols::rocksdb_sites_from(process, from),
            None => symbols::rocksdb_sites(process),
        }
        .with_context(|| format!("finding RocksDB functions in PID {pid}"))?;
        if sites.sites.is_empty()
            && opts.symbols_from.is_none()
            && symbols::stripped_with_rocksdb(process)
        {
            return Err(InputError::Other(format!(
                "PID {pid} ({}) runs a stripped binary with RocksDB: its functions cannot be located; \
                 pass --symbols-from FILE, an unstripped build of the same binary (same build-id)",
                process.exe.display()
            ))
            .into());
        }
        if sites.sites.is_empty() {
            return Err(InputError::Other(format!(
                "PID {pid} ({}) contains no RocksDB C API (rocksdb_* functions): is it a CKB node? \
                 `ckb-probe symbols --pid {pid}` shows what it contains",
                process.comm
            ))
            .into());
        }
        let mut collector = RocksCollector::new(engine)?;
        let report = rprobe::attach(
            engine,
            &sites,
            pid,
            rprobe::RocksOptions {
                iter_next: opts.iter_next,
                entry_only: opts.lightweight,
            },
        )?;
        // The baseline of every count: taken before anything else, so no call made after the
        // attach is missing from the summary.
        let first = collector.snapshot()?;
        let missing = if report.missing.is_empty() {
            String::new()
        } else {
            format!(
                "; not traced: {}",
                report
                    .missing
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        notes.push(format!(
            "attached to PID {pid} ({}, RocksDB {}): {} of {} functions traced ({} uprobes{}){missing}",
            sites.display.display(),
            sites.linkage.as_str(),
            report.attached.len(),
            report.attached.len() + report.missing.len(),
            report.uprobes.as_str(),
            if opts.lightweight {
                "; lightweight: entry probes only"
            } else {
                ""
            },
        ));
        if !report.single_stepped.is_empty() {
            notes.push(format!(
                "note: the kernel single-steps the first instruction of {} (a few µs more per call)",
                report.single_stepped.join(", ")
            ));
        }
        Ok(RocksLayer {
            detector: LatencyDetector::new(
                DetectorConfig {
                    warmup,
                    ..DetectorConfig::default()
                },
                first.at,
            ),
            opts,
            collector,
            attach: report,
            clock: MonoClock::new(),
            prev: first.clone(),
            first,
            slow: SlowState::default(),
            names: BTreeMap::new(),
            labels: CfLabels::default(),
        })
    }

    pub fn start(&self) -> Instant {
        self.first.at
    }

    /// Takes over `old`'s learnt latency baselines (a followed node restarted).
    pub fn adopt_baselines(&mut self, old: &mut RocksLayer) {
        std::mem::swap(&mut self.detector, &mut old.detector);
    }

    pub fn poll(&mut self) -> usize {
        let (clock, slow) = (&self.clock, &mut self.slow);
        let mut n = 0;
        self.collector.drain_events(|ev: SlowEvent| {
            slow.push(ms(clock.wall(ev.end_ns)), ev);
            n += 1;
        });
        n
    }

    fn read_names(&mut self) {
        self.names = self.collector.cf_names();
        self.labels.refresh(&self.names);
    }

    /// Latency histograms per operation since attach: the functions' histogram deltas summed
    /// by operation, without the rest of a whole-run interval.
    fn histograms(&self, cur: &RocksSnapshot) -> BTreeMap<&'static str, Vec<model::Bucket>> {
        let mut by_op: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
        for (fid, f) in TRACED.iter().enumerate() {
            let d = hist::delta(&cur.hist[fid][..], &self.first.hist[fid][..]);
            match by_op.get_mut(f.op.name()) {
                Some(acc) => hist::add(acc, &d),
                None => {
                    by_op.insert(f.op.name(), d);
                }
            }
        }
        sparse_all(&by_op)
    }

    /// The interval ending now; its anomalies go to the correlator too.
    pub fn tick(&mut self, now: Instant) -> Result<RocksSection> {
        let cur = self.collector.snapshot()?;
        self.read_names();
        let stats = interval(&self.prev, &cur, &self.names, self.opts.lightweight);
        let anomalies: Vec<Anomaly> = self.detector.observe(now, &stats);
        let slow = self.opts.slow_threshold_us.map(|threshold_us| {
            let last_60s = self.slow.last_60s(SystemTime::now());
            let skip = self.slow.recent.len().saturating_sub(RECENT_IN_REPORT);
            let labels = &self.labels;
            SlowLog {
                threshold_us,
                ops: self.slow.fresh.iter().map(|e| labels.op(e)).collect(),
                dropped: self.slow.dropped_fresh,
                recent: self
                    .slow
                    .recent
                    .iter()
                    .skip(skip)
                    .map(|e| labels.op(e))
                    .collect(),
                last_60s,
                total: self.slow.total,
            }
        });
        self.slow.fresh.clear();
        self.slow.dropped_fresh = 0;
        let section = RocksSection {
            histograms: self.histograms(&cur),
            stats,
            anomalies,
            warmup_left_secs: self.detector.warmup_left(now).as_secs_f64(),
            slow,
            attach: Some(self.attach_info()),
        };
        self.prev = cur;
        Ok(section)
    }

    fn attach_info(&self) -> Attach {
        let names = |v: &[&'static str]| v.iter().map(|s| s.to_string()).collect();
        Attach {
            attached: names(&self.attach.attached),
            missing: self
                .attach
                .missing
                .iter()
                .map(|(f, why)| Missing {
                    function: f.to_string(),
                    reason: why.to_string(),
                })
                .collect(),
            single_stepped: names(&self.attach.single_stepped),
            uprobes: self.attach.uprobes.as_str().to_string(),
        }
    }

    /// The whole run.
    pub fn summary(&mut self) -> Result<RocksSection> {
        let cur = self.collector.snapshot()?;
        self.read_names();
        let stats = interval(&self.first, &cur, &self.names, self.opts.lightweight);
        Ok(RocksSection {
            histograms: sparse_all(&stats.histograms),
            stats,
            anomalies: Vec::new(),
            warmup_left_secs: 0.0,
            slow: self.opts.slow_threshold_us.map(|threshold_us| SlowLog {
                threshold_us,
                total: self.slow.total,
                ..SlowLog::default()
            }),
            attach: Some(self.attach_info()),
        })
    }
}
