//! `ckb-probe rocksdb`: attach the RocksDB layer to a CKB node and report every interval;
//! with `--with syscall,net`, the other layers run in the same process and the cross-layer
//! correlation rules apply.

use std::{
    collections::{BTreeMap, VecDeque},
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use ckb_probe::{
    analysis::{
        anomaly::{DetectorConfig, LatencyDetector},
        correlate::Correlator,
        rocksdb::{RocksInterval, interval},
    },
    collect::{
        clock::MonoClock,
        rocksdb::{CfName, RocksCollector, RocksSnapshot},
    },
    error::InputError,
    node, privileges,
    probe::{
        Engine,
        rocksdb::{RocksAttach, RocksOptions, attach},
    },
    symbols,
    view::{
        self,
        rocksdb::{Header, SlowRecord},
    },
};
use ckb_probe_common::{
    config::{CONFIG_FLAG_CF, Config},
    rocksdb::{CF_DEFAULT, Op, SlowEvent},
};
use serde_json::{Map, Value, json};

use super::runner::{self, End, Layer, Piece, RunArgs, Runner, Signals};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    /// Show latency distributions (since start) instead of the rate table.
    #[arg(long)]
    pub histogram: bool,
    /// Show the slow-operation log (operations at or above --threshold).
    #[arg(long)]
    pub slow: bool,
    /// Slow-operation threshold in microseconds.
    #[arg(long, default_value_t = 1_000)]
    pub threshold: u64,
    /// Break each operation down by column family (CKB column).
    #[arg(long)]
    pub by_cf: bool,
    /// Seconds of baseline learning before anomaly alerts may fire.
    #[arg(long, default_value_t = 300.0)]
    pub warmup: f64,
    /// Do not trace rocksdb_iter_next (its probe is single-stepped, costly under heavy iteration).
    #[arg(long)]
    pub no_iter_next: bool,
    /// Do not resolve column families (no reads of RocksDB's objects in the target).
    #[arg(long)]
    pub no_cf: bool,
    /// Run other layers in the same process too (comma-separated: syscall, net); their
    /// reports follow the RocksDB table, and cross-layer correlation alerts are on.
    #[arg(long, value_delimiter = ',', value_name = "LAYERS")]
    pub with: Vec<String>,
}

/// Slow operations of the last 60 s: a bounded list for display, exact per-second counts, and
/// the events of the current interval for JSON. Raw 48-byte records are kept; labels (wall
/// time, column family) are made only when shown, so a flood of events stays cheap.
struct SlowLog {
    recent: VecDeque<(SystemTime, SlowEvent)>,
    per_sec: VecDeque<(u64, usize)>,
    fresh: Vec<(SystemTime, SlowEvent)>,
    dropped_fresh: u64,
    total: u64,
}

const SLOW_KEEP: usize = 1_000;
const SLOW_FRESH_MAX: usize = 100_000;

impl SlowLog {
    fn push(&mut self, wall: SystemTime, ev: SlowEvent) {
        let sec = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        match self.per_sec.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => self.per_sec.push_back((sec, 1)),
        }
        self.total += 1;
        if self.fresh.len() < SLOW_FRESH_MAX {
            self.fresh.push((wall, ev));
        } else {
            self.dropped_fresh += 1;
        }
        if self.recent.len() == SLOW_KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back((wall, ev));
    }

    fn last_60s(&mut self, now: SystemTime) -> usize {
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        while self.per_sec.front().is_some_and(|(s, _)| s + 60 <= now_s) {
            self.per_sec.pop_front();
        }
        let cutoff = now - Duration::from_secs(60);
        while self.recent.front().is_some_and(|(w, _)| *w < cutoff) {
            self.recent.pop_front();
        }
        self.per_sec.iter().map(|(_, n)| n).sum()
    }
}

fn cf_label(names: &BTreeMap<u64, CfName>, cf: u64) -> String {
    match cf {
        CF_DEFAULT => "default".into(),
        h => names.get(&h).map_or("unknown".into(), |n| n.name.clone()),
    }
}

/// One slow operation in JSON, serialized straight from the record (no JSON tree per event).
#[derive(serde::Serialize)]
struct SlowJson<'a> {
    time: String,
    time_ms: u64,
    operation: &'static str,
    function: &'static str,
    latency_us: f64,
    bytes: Option<u64>,
    column_family: &'a str,
    tid: u32,
    note: String,
}

fn slow_record(names: &BTreeMap<u64, CfName>, wall: SystemTime, ev: SlowEvent) -> SlowRecord {
    SlowRecord {
        wall,
        cf: cf_label(names, ev.cf),
        ev,
    }
}

/// The interval's slow events as a JSON array.
fn slow_json_array(names: &BTreeMap<u64, CfName>, events: &[(SystemTime, SlowEvent)]) -> String {
    let mut out = String::from("[");
    for (i, (wall, ev)) in events.iter().enumerate() {
        let r = slow_record(names, *wall, *ev);
        let j = SlowJson {
            time: view::rfc3339(r.wall),
            time_ms: r
                .wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            operation: r.op().name(),
            function: r.function(),
            latency_us: r.ev.latency_ns as f64 / 1_000.0,
            bytes: r.op().has_bytes().then_some(r.ev.bytes),
            column_family: &r.cf,
            tid: r.ev.tid,
            note: r.note(),
        };
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(&j).unwrap_or_default());
    }
    out.push(']');
    out
}

fn interval_json(iv: &RocksInterval) -> Map<String, Value> {
    let mut m = Map::new();
    // In the table's order (GET, PUT, WRITE, ...), not alphabetical.
    let ops: Map<String, Value> = Op::ALL
        .iter()
        .filter_map(|op| Some((op.name().to_string(), json!(iv.operations.get(op.name())?))))
        .collect();
    m.insert("operations".into(), Value::Object(ops));
    m.insert("functions".into(), json!(iv.functions));
    let cfs: Map<String, Value> = iv
        .column_families
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({"column": c.column, "operations": c.operations}),
            )
        })
        .collect();
    m.insert("column_families".into(), Value::Object(cfs));
    m.insert("lost_events".into(), json!(iv.lost_events));
    m.insert("unpaired".into(), json!(iv.unpaired));
    m.insert("cf_unresolved".into(), json!(iv.cf_unresolved));
    m.insert("stats_full".into(), json!(iv.stats_full));
    m
}

/// The RocksDB layer of one run: its collector, baselines, slow log and views.
struct RocksLayer {
    args: Args,
    pid: u32,
    node: String,
    collector: RocksCollector,
    attach: RocksAttach,
    clock: MonoClock,
    start: Instant,
    first: RocksSnapshot,
    prev: RocksSnapshot,
    detector: LatencyDetector,
    slow: SlowLog,
    interval: Duration,
}

impl Layer for RocksLayer {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn poll(&mut self) -> usize {
        let (clock, slow) = (&self.clock, &mut self.slow);
        let mut n = 0;
        self.collector.drain_events(|ev| {
            slow.push(clock.wall(ev.end_ns), ev);
            n += 1;
        });
        n
    }

    fn interval(&mut self, now: Instant) -> Result<Piece> {
        let cur = self.collector.snapshot()?;
        let names = self.collector.cf_names();
        let iv = interval(&self.prev, &cur, &names);
        let anomalies = self.detector.observe(now, &iv);
        let mut piece = Piece::default();
        if self.args.run.json {
            piece.json = interval_json(&iv);
            piece.json.insert("anomalies".into(), json!(anomalies));
            if self.args.slow {
                piece
                    .json
                    .insert("slow_ops_dropped".into(), json!(self.slow.dropped_fresh));
                piece
                    .raw_json
                    .push(("slow_ops", slow_json_array(&names, &self.slow.fresh)));
            }
        } else {
            let header = Header {
                pid: self.pid,
                uptime: now.duration_since(self.start),
                interval: self.interval,
                node: &self.node,
            };
            let out = &mut piece.text;
            if self.args.histogram {
                let total = interval(&self.first, &cur, &names);
                out.push_str(&view::rocksdb::histograms(&total.histograms, "since start"));
            } else if self.args.slow {
                let total = self.slow.last_60s(SystemTime::now());
                let shown: Vec<SlowRecord> = self
                    .slow
                    .recent
                    .iter()
                    .rev()
                    .take(20)
                    .rev()
                    .map(|(w, ev)| slow_record(&names, *w, *ev))
                    .collect();
                out.push_str(&view::rocksdb::slow_table(
                    self.args.threshold,
                    &shown,
                    total,
                ));
            } else {
                out.push_str(&view::rocksdb::table(&header, &iv));
                if self.args.by_cf {
                    out.push_str(&view::rocksdb::cf_table(&iv));
                }
            }
            out.push_str(&view::rocksdb::status(
                &anomalies,
                self.detector.warmup_left(now),
                &iv,
            ));
        }
        self.slow.fresh.clear();
        self.slow.dropped_fresh = 0;
        self.prev = cur;
        piece.signals = Signals {
            anomalies,
            ..Signals::default()
        };
        Ok(piece)
    }

    fn summary(&mut self, _end: End) -> Result<Piece> {
        let cur = self.collector.snapshot()?;
        let names = self.collector.cf_names();
        let total = interval(&self.first, &cur, &names);
        let mut piece = Piece::default();
        if self.args.run.json {
            piece.json = interval_json(&total);
            piece
                .json
                .insert("attached".into(), json!(self.attach.attached));
            let missing: Vec<Value> = self
                .attach
                .missing
                .iter()
                .map(|(f, why)| json!({"function": f, "reason": why}))
                .collect();
            piece.json.insert("missing".into(), json!(missing));
            piece
                .json
                .insert("single_stepped".into(), json!(self.attach.single_stepped));
            piece
                .json
                .insert("slow_ops_total".into(), json!(self.slow.total));
        } else {
            let header = Header {
                pid: self.pid,
                uptime: Duration::from_secs_f64(total.secs),
                interval: Duration::from_secs_f64(total.secs),
                node: &self.node,
            };
            let out = &mut piece.text;
            out.push_str(&format!(
                "\nSummary over {} (averages and percentiles over the whole run):\n",
                view::hms(Duration::from_secs_f64(total.secs))
            ));
            out.push_str(&view::rocksdb::table(&header, &total));
            let counts: Vec<String> = total
                .operations
                .iter()
                .filter(|(_, r)| r.count > 0)
                .map(|(k, r)| format!("{k} {}", view::thousands(r.count)))
                .collect();
            out.push_str(&format!("  Operations: {}\n", counts.join(", ")));
            out.push_str(&format!(
                "  Slow operations: {}   Lost slow events: {}   Unpaired returns: {}\n",
                view::thousands(self.slow.total),
                total.lost_events,
                total.unpaired
            ));
        }
        Ok(piece)
    }
}

/// Layers `--with` can add.
const WITH: [&str; 2] = ["syscall", "net"];

pub fn run(args: Args) -> Result<ExitCode> {
    let limits = args.run.limits()?;
    let interval_d = limits.interval;
    let warmup = runner::warmup(args.warmup)?;
    for w in &args.with {
        if !WITH.contains(&w.as_str()) {
            return Err(InputError::Other(format!(
                "--with {w}: unknown layer; use a comma-separated list of {}",
                WITH.join(", ")
            ))
            .into());
        }
    }

    let process = runner::target(args.run.pid)?;
    let pid = process.pid;
    let sites = symbols::rocksdb_sites(&process)
        .with_context(|| format!("finding RocksDB functions in PID {pid}"))?;
    if sites.sites.is_empty() {
        return Err(InputError::Other(format!(
            "PID {pid} ({}) contains no RocksDB C API (rocksdb_* functions): is it a CKB node? \
             `ckb-probe symbols --pid {pid}` shows what it contains",
            process.comm
        ))
        .into());
    }

    let config = Config {
        tgid: pid,
        flags: if args.no_cf { 0 } else { CONFIG_FLAG_CF },
        slow_threshold_ns: if args.slow {
            args.threshold.saturating_mul(1_000)
        } else {
            u64::MAX
        },
    };
    let mut engine = Engine::load(config)?;
    let collector = RocksCollector::new(&mut engine)?;
    let report = attach(
        &mut engine,
        &sites,
        pid,
        RocksOptions {
            iter_next: !args.no_iter_next,
        },
    )?;
    // The baseline of every count: taken before anything else, so no call made after the
    // attach is missing from the summary.
    let start = Instant::now();
    let first = collector.snapshot()?;
    eprintln!(
        "ckb-probe: attached to PID {pid} ({}, RocksDB {}): {} of {} functions traced{}",
        sites.display.display(),
        sites.linkage.as_str(),
        report.attached.len(),
        report.attached.len() + report.missing.len(),
        if report.missing.is_empty() {
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
        }
    );
    if !report.single_stepped.is_empty() {
        eprintln!(
            "ckb-probe: note: the kernel single-steps the first instruction of {} (a few µs more per call)",
            report.single_stepped.join(", ")
        );
    }

    let node_desc = node::describe(&process);
    let mut others: Vec<Box<dyn Layer>> = Vec::new();
    for w in &args.with {
        match w.as_str() {
            "syscall" => others.push(Box::new(super::syscall::secondary(
                &mut engine,
                &process,
                args.run.json,
                &node_desc,
                (start, interval_d),
            )?)),
            "net" => others.push(Box::new(super::net::secondary(
                &mut engine,
                &process,
                args.run.json,
                warmup,
                &node_desc,
                (start, interval_d),
            )?)),
            _ => {}
        }
    }
    // Everything that needs privileges (loading, attaching, reading the target's files) is
    // done, except the net layer's re-reading of the target's sockets.
    let keep: &[privileges::Capability] = if args.with.iter().any(|w| w == "net") {
        &[privileges::CAP_SYS_PTRACE]
    } else {
        &[]
    };
    if let Err(e) = privileges::drop_all_but(keep) {
        tracing::warn!("could not drop capabilities: {e}");
    }

    let correlator = (!others.is_empty()).then(|| Correlator::new(start, warmup));
    let rocks = RocksLayer {
        detector: LatencyDetector::new(
            DetectorConfig {
                warmup,
                ..DetectorConfig::default()
            },
            start,
        ),
        args,
        pid,
        node: node_desc.clone(),
        collector,
        attach: report,
        clock: MonoClock::new(),
        start,
        prev: first.clone(),
        first,
        slow: SlowLog {
            recent: VecDeque::new(),
            per_sec: VecDeque::new(),
            fresh: Vec::new(),
            dropped_fresh: 0,
            total: 0,
        },
        interval: interval_d,
    };
    let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(rocks)];
    layers.extend(others);
    let end = Runner::new(pid, node_desc, start, limits, layers, correlator).run()?;
    drop(engine);
    runner::said_goodbye(end, pid);
    Ok(ExitCode::SUCCESS)
}
