//! `ckb-probe rocksdb`: attach the RocksDB layer to a CKB node and report every interval.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use ckb_probe::{
    analysis::{
        anomaly::{Anomaly, DetectorConfig, LatencyDetector},
        rocksdb::{RocksInterval, interval},
    },
    collect::rocksdb::{CfName, RocksCollector, RocksSnapshot},
    error::InputError,
    node, privileges,
    probe::{
        Engine,
        rocksdb::{RocksAttach, RocksOptions, attach},
    },
    symbols, target,
    view::{
        self,
        rocksdb::{Header, SlowRecord},
    },
};
use ckb_probe_common::{
    config::{CONFIG_FLAG_CF, Config},
    rocksdb::{CF_DEFAULT, SlowEvent},
};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// PID of the CKB node; default: the one process running `ckb run`.
    #[arg(short, long)]
    pub pid: Option<u32>,
    /// Seconds between reports.
    #[arg(short, long, default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many seconds.
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// Stop after this many reports.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// NDJSON: one object per interval, then a summary object.
    #[arg(long)]
    pub json: bool,
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
}

fn positive(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e7) {
        return Err(InputError::Other(format!(
            "--{name} must be a positive number of seconds, got {v}"
        ))
        .into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// Why the run ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Signal,
    TargetExited,
    Duration,
    Count,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Signal => "signal",
            End::TargetExited => "target_exited",
            End::Duration => "duration",
            End::Count => "count",
        }
    }
}

/// Converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time.
struct Clock {
    wall: SystemTime,
    mono_ns: u64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            wall: SystemTime::now(),
            mono_ns: monotonic_ns(),
        }
    }

    fn wall(&self, mono_ns: u64) -> SystemTime {
        if mono_ns >= self.mono_ns {
            self.wall + Duration::from_nanos(mono_ns - self.mono_ns)
        } else {
            self.wall - Duration::from_nanos(self.mono_ns - mono_ns)
        }
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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

/// Appends `,"slow_ops":[...]` for the interval's events to a JSON object missing its `}`.
fn push_slow_json(
    out: &mut String,
    names: &BTreeMap<u64, CfName>,
    events: &[(SystemTime, SlowEvent)],
) {
    out.push_str(",\"slow_ops\":[");
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
}

fn interval_json(iv: &RocksInterval) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("operations".into(), json!(iv.operations));
    m.insert("functions".into(), json!(iv.functions));
    let cfs: serde_json::Map<String, Value> = iv
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
    m
}

struct Session {
    args: Args,
    pid: u32,
    node: String,
    collector: RocksCollector,
    attach: RocksAttach,
    clock: Clock,
    start: Instant,
    first: RocksSnapshot,
    prev: RocksSnapshot,
    detector: LatencyDetector,
    anomalies: Vec<Anomaly>,
    slow: SlowLog,
    interval: Duration,
    tty: bool,
}

impl Session {
    /// Moves pending slow events out of the ring buffer; returns how many there were.
    fn drain(&mut self) -> usize {
        let (clock, slow) = (&self.clock, &mut self.slow);
        let mut n = 0;
        self.collector.drain_events(|ev| {
            slow.push(clock.wall(ev.end_ns), ev);
            n += 1;
        });
        n
    }

    fn report(&mut self, cur: RocksSnapshot, now: Instant) -> Result<()> {
        let names = self.collector.cf_names();
        let iv = interval(&self.prev, &cur, &names);
        self.anomalies = self.detector.observe(now, &iv);
        let wall = SystemTime::now();
        let uptime = now.duration_since(self.start);
        let mut out = String::new();
        if self.args.json {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), json!("interval"));
            m.insert("timestamp".into(), json!(view::rfc3339(wall)));
            m.insert("pid".into(), json!(self.pid));
            m.insert("uptime_secs".into(), json!(uptime.as_secs()));
            m.insert("interval_secs".into(), json!(iv.secs));
            m.insert("node".into(), json!(self.node));
            m.extend(interval_json(&iv));
            m.insert("anomalies".into(), json!(self.anomalies));
            if self.args.slow {
                m.insert("slow_ops_dropped".into(), json!(self.slow.dropped_fresh));
            }
            out.push_str(&Value::Object(m).to_string());
            if self.args.slow {
                out.pop();
                push_slow_json(&mut out, &names, &self.slow.fresh);
                out.push('}');
            }
            out.push('\n');
        } else {
            if self.tty {
                out.push_str("\x1b[H\x1b[2J");
            }
            let header = Header {
                pid: self.pid,
                uptime,
                interval: self.interval,
                node: &self.node,
            };
            if self.args.histogram {
                let total = interval(&self.first, &cur, &names);
                out.push_str(&view::rocksdb::histograms(&total.histograms, "since start"));
            } else if self.args.slow {
                let total = self.slow.last_60s(wall);
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
                &self.anomalies,
                self.detector.warmup_left(now),
                iv.lost_events,
                iv.unpaired,
            ));
            if !self.tty {
                out.push('\n');
            }
        }
        self.slow.fresh.clear();
        self.slow.dropped_fresh = 0;
        self.prev = cur;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
        Ok(())
    }

    fn summary(&mut self, cur: &RocksSnapshot, end: End) -> Result<()> {
        let names = self.collector.cf_names();
        let total = interval(&self.first, cur, &names);
        let mut out = String::new();
        if self.args.json {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), json!("summary"));
            m.insert("timestamp".into(), json!(view::rfc3339(SystemTime::now())));
            m.insert("pid".into(), json!(self.pid));
            m.insert("duration_secs".into(), json!(total.secs));
            m.insert("end".into(), json!(end.name()));
            m.insert("node".into(), json!(self.node));
            m.extend(interval_json(&total));
            m.insert("attached".into(), json!(self.attach.attached));
            m.insert(
                "missing".into(),
                json!(
                    self.attach
                        .missing
                        .iter()
                        .map(|(f, why)| json!({"function": f, "reason": why}))
                        .collect::<Vec<_>>()
                ),
            );
            m.insert("single_stepped".into(), json!(self.attach.single_stepped));
            m.insert("slow_ops_total".into(), json!(self.slow.total));
            out.push_str(&Value::Object(m).to_string());
            out.push('\n');
        } else {
            let header = Header {
                pid: self.pid,
                uptime: Duration::from_secs_f64(total.secs),
                interval: Duration::from_secs_f64(total.secs),
                node: &self.node,
            };
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
                self.slow.total, total.lost_events, total.unpaired
            ));
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
        Ok(())
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let interval_d = positive("interval", args.interval)?;
    let duration = args.duration.map(|d| positive("duration", d)).transpose()?;
    let warmup = if args.warmup == 0.0 {
        Duration::ZERO
    } else {
        positive("warmup", args.warmup)?
    };
    if args.count == Some(0) {
        return Err(InputError::Other("--count must be at least 1".into()).into());
    }

    let process = match args.pid {
        Some(pid) => target::process(pid)?,
        None => {
            let p = target::pick_ckb_node()?;
            eprintln!(
                "ckb-probe: tracing the CKB node with PID {} ({})",
                p.pid,
                p.cmdline.join(" ")
            );
            p
        }
    };
    let pid = process.pid;
    let sites = symbols::rocksdb_sites(&process)
        .with_context(|| format!("finding RocksDB functions in PID {pid}"))?;

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

    let binary_version = symbols::analyze(&process.exe_open)
        .ok()
        .and_then(|r| r.ckb_version);
    let node_desc = node::describe(&process, binary_version.as_deref());
    // Everything that needs privileges (loading, attaching, reading the target's files) is done.
    if let Err(e) = privileges::drop_all() {
        tracing::warn!("could not drop capabilities: {e}");
    }

    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term)).context("installing signal handler")?;
    }

    let mut s = Session {
        detector: LatencyDetector::new(
            DetectorConfig {
                warmup,
                ..DetectorConfig::default()
            },
            start,
        ),
        tty: !args.json && std::io::stdout().is_terminal(),
        args,
        pid,
        node: node_desc,
        collector,
        attach: report,
        clock: Clock::new(),
        start,
        prev: first.clone(),
        first,
        anomalies: Vec::new(),
        slow: SlowLog {
            recent: VecDeque::new(),
            per_sec: VecDeque::new(),
            fresh: Vec::new(),
            dropped_fresh: 0,
            total: 0,
        },
        interval: interval_d,
    };

    let tick = Duration::from_millis(100);
    let busy_tick = Duration::from_millis(10);
    let mut next = start + interval_d;
    let mut reports = 0u64;
    let end = loop {
        if term.load(Ordering::Relaxed) {
            break End::Signal;
        }
        if !target::is_alive(pid) {
            break End::TargetExited;
        }
        let now = Instant::now();
        if duration.is_some_and(|d| now >= start + d) {
            break End::Duration;
        }
        let drained = s.drain();
        if now >= next {
            let cur = s.collector.snapshot()?;
            s.report(cur, now)?;
            reports += 1;
            next += interval_d;
            if next < now {
                next = now + interval_d;
            }
            if s.args.count.is_some_and(|c| reports >= c) {
                break End::Count;
            }
        }
        // While events flow, come back sooner so the ring buffer never fills up.
        let poll = if drained > 0 { busy_tick } else { tick };
        let wait = next.saturating_duration_since(Instant::now()).min(poll);
        std::thread::sleep(wait);
    };

    // Final read: everything the kernel recorded up to now, including a partial interval.
    s.drain();
    let cur = s.collector.snapshot()?;
    if end != End::Count && cur.at.duration_since(s.prev.at) >= Duration::from_millis(50) {
        s.report(cur.clone(), cur.at)?;
    }
    s.summary(&cur, end)?;
    drop(engine);
    if end == End::TargetExited {
        eprintln!("ckb-probe: target process {pid} exited; probes detached, summary above.");
    }
    Ok(ExitCode::SUCCESS)
}
