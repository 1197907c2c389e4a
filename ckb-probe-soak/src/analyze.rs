//! The numbers of the report, computed from the run's own files: CPU and RSS from the /proc
//! samples, everything about events, latencies, loss and alerts from ckb-probe's NDJSON (the same
//! typed reports the live views render), fidelity against the testbed's ground truth.

use std::collections::BTreeMap;
use std::time::Duration;

use ckb_probe::model::{Bucket, End, Report};
use ckb_probe_common::hist::{BUCKETS, bucket_of};
use ckb_probe_common::rocksdb::{Op, TRACED};
use serde::Serialize;

use crate::data::{KindRun, PhaseEvent, Run, Sample, epoch_of};

/// The spec's thresholds (section 6.4).
pub const P1_MAX_CPU_PP: f64 = 3.0;
pub const P2_MAX_RSS_MB: f64 = 50.0;
pub const P3_MAX_LOSS_PCT: f64 = 0.1;
pub const P3_LOAD_EVENTS_PER_SEC: f64 = 10_000.0;
pub const S2_MAX_GROWTH_MB_48H: f64 = 5.0;
pub const F7_MAX_ALERT_SECS: f64 = 15.0;

/// min / max / avg / P99 of a set of values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stat {
    pub n: usize,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub p99: f64,
}

pub fn stat(values: &[f64]) -> Option<Stat> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // Nearest rank, as the testbed's ground truth does.
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
    Some(Stat {
        n,
        min: v[0],
        max: v[n - 1],
        avg: v.iter().sum::<f64>() / n as f64,
        p99: v[rank - 1],
    })
}

/// Least-squares slope of `y` over `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// One process between two consecutive samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CpuPoint {
    pub t0_ms: u64,
    pub t1_ms: u64,
    /// Minutes since the run started, at the end of the span.
    pub minute: f64,
    /// Percent of one core over the span (as `top` shows it).
    pub cpu_pct: f64,
    /// RSS at the end of the span, MB (MiB).
    pub rss_mb: f64,
}

/// CPU% and RSS of one role, from pairs of consecutive samples of the same process.
pub fn cpu_points(samples: &[Sample], role: &str, clk_tck: f64, start_ms: u64) -> Vec<CpuPoint> {
    let mine: Vec<&Sample> = samples.iter().filter(|s| s.role == role).collect();
    mine.windows(2)
        .filter(|w| w[0].pid == w[1].pid && w[1].t_ms > w[0].t_ms)
        .map(|w| {
            let ticks = (w[1].utime + w[1].stime).saturating_sub(w[0].utime + w[0].stime);
            let secs = (w[1].t_ms - w[0].t_ms) as f64 / 1000.0;
            CpuPoint {
                t0_ms: w[0].t_ms,
                t1_ms: w[1].t_ms,
                minute: minutes(w[1].t_ms, start_ms),
                cpu_pct: ticks as f64 / clk_tck / secs * 100.0,
                // /proc reports kB (KiB); MB here are 10^6 bytes, the unit of P-2 and S-2.
                rss_mb: w[1].rss_kb as f64 * 1024.0 / 1e6,
            }
        })
        .collect()
}

pub fn minutes(t_ms: u64, start_ms: u64) -> f64 {
    (t_ms as f64 - start_ms as f64) / 60_000.0
}

/// Whether a control sample span had probes attached, none, or changed state within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    With,
    Without,
    Mixed,
}

/// Classifies `[t0, t1]` against the control windows of `kind`: `With` inside an attached
/// window (between `on` and `off`), `Without` clear of every window from the probe's launch
/// (`start`) to its exit (`off`), `Mixed` otherwise (attaching or detaching inside the span).
pub fn classify(run: &Run, kind: &str, t0: u64, t1: u64) -> Window {
    let mut windows = Vec::new(); // (start, on, off)
    let mut cur: Option<(u64, Option<u64>)> = None;
    for p in run.phases.iter().filter(|p| p.kind == kind) {
        match p.event {
            PhaseEvent::Start => cur = Some((p.t_ms, None)),
            PhaseEvent::On => {
                if let Some(c) = cur.as_mut() {
                    c.1 = Some(p.t_ms);
                }
            }
            PhaseEvent::Off => {
                if let Some((s, on)) = cur.take() {
                    windows.push((s, on, p.t_ms));
                }
            }
        }
    }
    // A window still open (the run ended inside it) lasts until the end of the samples.
    if let Some((s, on)) = cur {
        windows.push((s, on, u64::MAX));
    }
    for &(s, on, off) in &windows {
        if let Some(on) = on
            && t0 >= on
            && t1 <= off
        {
            return Window::With;
        }
        if t1 >= s && t0 <= off {
            return Window::Mixed;
        }
    }
    Window::Without
}

/// Ten-second (or `--sample`-second) slices of the subject's NDJSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Chunk {
    pub minute: f64,
    pub secs: f64,
    pub rocksdb_calls: u64,
    pub syscalls: u64,
    pub net_events: u64,
    pub lost: u64,
    pub not_recorded: u64,
    pub unpaired: u64,
    /// P99 per operation over the chunk (µs), from the difference of the cumulative histograms.
    pub p99_us: BTreeMap<String, f64>,
}

impl Chunk {
    pub fn events(&self) -> u64 {
        self.rocksdb_calls + self.syscalls + self.net_events
    }

    pub fn events_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.events() as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Events of successive reports of one ckb-probe run: RocksDB calls and system calls are per
/// interval in a report; the network layer's send/receive counts are cumulative since attach
/// (`net.totals`), so an interval's share is the difference from the report before.
#[derive(Default)]
pub struct EventCounter {
    net_prev: u64,
}

impl EventCounter {
    /// (RocksDB calls, system calls, network sends + receives + connection events) of `r`, the
    /// report after the one last given.
    pub fn events(&mut self, r: &Report) -> (u64, u64, u64) {
        let rocks = r.rocksdb.as_ref().map_or(0, |s| {
            s.stats.operations.values().map(|o| o.count).sum::<u64>()
        });
        let sys = r
            .syscall
            .as_ref()
            .map_or(0, |s| s.stats.syscalls.iter().map(|c| c.count).sum::<u64>());
        let net = r.net.as_ref().map_or(0, |n| {
            let cumulative = n.stats.totals.sends + n.stats.totals.recvs;
            let delta = cumulative.saturating_sub(self.net_prev);
            self.net_prev = cumulative;
            delta + n.events.len() as u64 + n.events_dropped
        });
        (rocks, sys, net)
    }
}

/// A sparse histogram as a dense one in the kernel's bucket layout.
pub fn dense(h: &[Bucket]) -> Vec<u64> {
    let mut d = vec![0u64; BUCKETS];
    for b in h {
        d[bucket_of(b.low_ns)] += b.count;
    }
    d
}

fn op_hists(r: &Report) -> BTreeMap<String, Vec<u64>> {
    r.rocksdb
        .as_ref()
        .map(|s| {
            s.histograms
                .iter()
                .map(|(k, v)| (k.to_string(), dense(v)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn chunks(reports: &[Report], every_secs: f64, start_ms: u64) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut prev_hists: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut cur: Option<(u64, Chunk)> = None;
    let mut last_hists = BTreeMap::new();
    let mut counter = EventCounter::default();
    let flush = |c: (u64, Chunk),
                 last: &BTreeMap<String, Vec<u64>>,
                 prev: &mut BTreeMap<String, Vec<u64>>,
                 out: &mut Vec<Chunk>| {
        let mut chunk = c.1;
        for (op, h) in last {
            let d = match prev.get(op) {
                Some(p) => ckb_probe::analysis::hist::delta(h, p),
                None => h.clone(),
            };
            if let Some(q) = ckb_probe::analysis::hist::quantile(&d, 0.99, None) {
                chunk.p99_us.insert(op.clone(), q / 1000.0);
            }
        }
        *prev = last.clone();
        out.push(chunk);
    };
    for r in reports {
        let idx = (r.header.uptime_secs.saturating_sub(1) as f64 / every_secs) as u64;
        if cur.as_ref().is_some_and(|(i, _)| *i != idx)
            && let Some(c) = cur.take()
        {
            flush(c, &last_hists, &mut prev_hists, &mut out);
        }
        let (_, c) = cur.get_or_insert_with(|| (idx, Chunk::default()));
        let (rocks, sys, net) = counter.events(r);
        let h = r.health();
        c.secs += r.header.interval_secs;
        c.rocksdb_calls += rocks;
        c.syscalls += sys;
        c.net_events += net;
        c.lost += h.lost_events;
        c.not_recorded += h.maps_full;
        c.unpaired += h.unpaired;
        if let Some(t) = epoch_of(&r.header.timestamp) {
            c.minute = minutes((t * 1000.0) as u64, start_ms);
        }
        last_hists = op_hists(r);
    }
    if let Some(c) = cur.take() {
        flush(c, &last_hists, &mut prev_hists, &mut out);
    }
    out
}

/// Generated (ground truth) against captured (ckb-probe's summary) calls of one row.
#[derive(Clone, Debug, Serialize)]
pub struct Fidelity {
    pub name: String,
    pub generated: u64,
    pub captured: u64,
}

impl Fidelity {
    pub fn diff(&self) -> i64 {
        self.captured as i64 - self.generated as i64
    }

    pub fn captured_pct(&self) -> Option<f64> {
        (self.generated > 0).then(|| self.captured as f64 / self.generated as f64 * 100.0)
    }
}

/// Per operation and per traced function, from the testbed's ground truth and the summary.
pub fn fidelity(truth: &serde_json::Value, summary: &Report) -> (Vec<Fidelity>, Vec<Fidelity>) {
    let Some(stats) = summary.rocksdb.as_ref().map(|s| &s.stats) else {
        return (Vec::new(), Vec::new());
    };
    let mut by_fn = Vec::new();
    let mut by_op: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for f in TRACED.iter() {
        let generated = truth["functions"][f.symbol]["calls"].as_u64().unwrap_or(0);
        let captured = stats.functions.get(f.symbol).map_or(0, |r| r.count);
        if generated == 0 && captured == 0 {
            continue;
        }
        let e = by_op.entry(f.op.name()).or_default();
        e.0 += generated;
        e.1 += captured;
        by_fn.push(Fidelity {
            name: f.symbol.to_string(),
            generated,
            captured,
        });
    }
    let ops = Op::ALL
        .iter()
        .filter_map(|op| {
            by_op.get(op.name()).map(|&(g, c)| Fidelity {
                name: op.name().to_string(),
                generated: g,
                captured: c,
            })
        })
        .collect();
    (ops, by_fn)
}

/// One storm of the testbed and what ckb-probe said about it.
#[derive(Clone, Debug, Serialize)]
pub struct StormCase {
    pub index: usize,
    pub start_epoch: f64,
    pub secs: f64,
    /// When the first anomaly that started during the storm was reported (the report's time).
    pub alert_epoch: Option<f64>,
    /// The anomaly's own start time (its `time` field).
    pub anomaly_start_epoch: Option<f64>,
    /// The alert block exactly as the live table prints it (`view::rocksdb::status`).
    pub alert_text: Option<String>,
    pub operations: Vec<String>,
    pub max_multiplier: f64,
    /// Cross-layer correlations reported during the storm.
    pub correlations: Vec<String>,
}

impl StormCase {
    pub fn delay(&self) -> Option<f64> {
        self.alert_epoch.map(|a| a - self.start_epoch)
    }
}

/// Storm windows of the testbed subject, from the run's parameters and the measured start.
pub fn storm_windows(run: &Run, k: &KindRun) -> Vec<(f64, f64)> {
    let (Some(start), Some(after), Some(secs)) = (
        k.measured_start_ms,
        run.env.num("storm_after_secs"),
        run.env.num("storm_secs"),
    ) else {
        return Vec::new();
    };
    if k.truth.as_ref().is_some_and(|t| t.get("storm").is_none()) {
        return Vec::new();
    }
    let every = run.env.num("storm_every_secs").unwrap_or(f64::INFINITY);
    let duration = run.env.num("duration_secs").unwrap_or(0.0);
    let start = start as f64 / 1000.0;
    let mut out = Vec::new();
    let mut s = after;
    while s < duration {
        out.push((start + s, secs.min(duration - s)));
        if !every.is_finite() {
            break;
        }
        s += every;
    }
    out
}

pub fn storm_cases(run: &Run, k: &KindRun) -> Vec<StormCase> {
    storm_windows(run, k)
        .into_iter()
        .enumerate()
        .map(|(index, (start, secs))| {
            let mut case = StormCase {
                index,
                start_epoch: start,
                secs,
                alert_epoch: None,
                anomaly_start_epoch: None,
                alert_text: None,
                operations: Vec::new(),
                max_multiplier: 0.0,
                correlations: Vec::new(),
            };
            // Reports from the storm's start until 30 s after its end.
            for r in &k.intervals {
                let Some(t) = epoch_of(&r.header.timestamp) else {
                    continue;
                };
                if t < start || t > start + secs + 30.0 {
                    continue;
                }
                let Some(rs) = r.rocksdb.as_ref() else {
                    continue;
                };
                // Anomalies that began with the storm (one second of slack: reports are stamped
                // to the second).
                let fresh: Vec<_> = rs
                    .anomalies
                    .iter()
                    .filter(|a| epoch_of(&a.time).is_some_and(|s| s >= start - 1.0))
                    .collect();
                for a in &fresh {
                    case.max_multiplier = case.max_multiplier.max(a.multiplier);
                    if !case.operations.iter().any(|o| o == &*a.operation) {
                        case.operations.push(a.operation.to_string());
                    }
                }
                if case.alert_epoch.is_none() && !fresh.is_empty() {
                    case.alert_epoch = Some(t);
                    case.anomaly_start_epoch = fresh
                        .iter()
                        .filter_map(|a| epoch_of(&a.time))
                        .reduce(f64::min);
                    case.alert_text = Some(
                        ckb_probe::view::rocksdb::status(&rs.anomalies, Duration::ZERO, &rs.stats)
                            .trim_matches('\n')
                            .to_string(),
                    );
                }
                for c in r.correlations.iter().flatten() {
                    let line = format!("[{}] {}: {}", &c.time[11..19], c.kind, c.summary);
                    if !case.correlations.contains(&line) {
                        case.correlations.push(line);
                    }
                }
            }
            case
        })
        .collect()
}

/// Per-second latency around one storm, for its chart: (seconds from the storm's start,
/// operation, avg µs, P99 µs).
pub fn storm_series(k: &KindRun, case: &StormCase, margin: f64) -> Vec<(f64, String, f64, f64)> {
    let mut out = Vec::new();
    for r in &k.intervals {
        let Some(t) = epoch_of(&r.header.timestamp) else {
            continue;
        };
        let rel = t - case.start_epoch;
        if rel < -margin || rel > case.secs + margin {
            continue;
        }
        if let Some(rs) = r.rocksdb.as_ref() {
            for (op, o) in &rs.stats.operations {
                if let (Some(avg), Some(p99)) = (o.avg_us, o.p99_us) {
                    out.push((rel, op.to_string(), avg, p99));
                }
            }
        }
    }
    out
}

/// Kernel log records by how they bear on S-3.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KernelLog {
    pub records: usize,
    /// Records mentioning BPF, uprobes, perf events or the verifier.
    pub bpf: Vec<String>,
    /// Kernel warning/bug splats (`WARNING:`, `BUG:`, `Oops`, `Call Trace`).
    pub warnings: Vec<String>,
    /// Other records at warning priority or worse (listed, not counted against S-3).
    pub other_high: Vec<String>,
    /// Sequence numbers skipped (records lost from the ring before they were read).
    pub seq_gaps: u64,
}

pub fn kernel_log(run: &Run) -> KernelLog {
    let mut k = KernelLog {
        records: run.kmsg.len(),
        ..KernelLog::default()
    };
    let mut last_seq: Option<u64> = None;
    for r in &run.kmsg {
        if let Some(l) = last_seq
            && r.seq > l + 1
        {
            k.seq_gaps += r.seq - l - 1;
        }
        last_seq = Some(r.seq);
        let low = r.text.to_lowercase();
        let line = format!("<{}> {}", r.priority, r.text);
        if ["bpf", "uprobe", "uretprobe", "perf_event", "verifier"]
            .iter()
            .any(|w| low.contains(w))
        {
            k.bpf.push(line);
        } else if [
            "warning:",
            "bug:",
            "oops",
            "call trace",
            "general protection",
        ]
        .iter()
        .any(|w| low.contains(w))
        {
            k.warnings.push(line);
        } else if r.priority <= 4 {
            k.other_high.push(line);
        }
    }
    k
}

/// S-1's evidence for one subject probe.
#[derive(Clone, Debug, Serialize)]
pub struct Survival {
    pub exit_code: Option<i32>,
    pub end: Option<String>,
    pub panicked: bool,
    /// Different ckb-probe pids seen in the samples (1 = never restarted).
    pub probe_pids: usize,
    pub intervals: usize,
    /// Longest gap between consecutive interval reports, seconds.
    pub max_gap_secs: f64,
    pub bad_lines: usize,
}

impl Survival {
    pub fn ok(&self, expected_end: End) -> bool {
        self.exit_code == Some(0)
            && self.end.as_deref() == Some(expected_end.name())
            && !self.panicked
            && self.probe_pids == 1
            && self.bad_lines == 0
            && self.max_gap_secs < 5.0
    }
}

pub fn survival(run: &Run, k: &KindRun) -> Survival {
    let role = format!("{}.probe", k.name);
    let mut pids: Vec<u32> = run
        .samples
        .iter()
        .filter(|s| s.role == role)
        .map(|s| s.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    let times: Vec<f64> = k
        .intervals
        .iter()
        .filter_map(|r| epoch_of(&r.header.timestamp))
        .collect();
    let max_gap_secs = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    Survival {
        exit_code: k.probe_exit,
        end: k
            .summary
            .as_ref()
            .and_then(|s| s.header.end)
            .map(|e| e.name().to_string()),
        panicked: k.probe_log.contains("panicked"),
        probe_pids: pids.len(),
        intervals: k.intervals.len(),
        max_gap_secs,
        bad_lines: k.bad_lines.len(),
    }
}

/// The with/without comparison on the control target (P-1).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overhead {
    pub with: Option<Stat>,
    pub without: Option<Stat>,
    /// Average CPU of the control's own ckb-probe while it ran.
    pub probe: Option<Stat>,
    pub windows_with: usize,
    /// RocksDB calls per second the control made while traced (its probes' NDJSON).
    pub control_rocksdb_per_sec: Option<f64>,
    /// All events (RocksDB calls, system calls, network) per second while traced.
    pub control_events_per_sec: Option<f64>,
}

impl Overhead {
    /// Target CPU with minus without, in percentage points of one core.
    pub fn delta_pp(&self) -> Option<f64> {
        Some(self.with?.avg - self.without?.avg)
    }

    /// Target CPU the probes added per traced RocksDB call, µs (every layer's cost included).
    pub fn us_per_rocksdb_call(&self) -> Option<f64> {
        let calls = self.control_rocksdb_per_sec.filter(|c| *c > 0.0)?;
        Some(self.delta_pp()? / 100.0 / calls * 1e6)
    }

    pub fn delta_rel_pct(&self) -> Option<f64> {
        let w = self.without?.avg;
        (w > 0.0).then(|| self.delta_pp().unwrap_or(0.0) / w * 100.0)
    }
}

pub fn overhead(
    run: &Run,
    k: &KindRun,
    clk_tck: f64,
    start_ms: u64,
) -> (Overhead, Vec<(CpuPoint, Window)>) {
    let kind = k.name.as_str();
    let points = cpu_points(&run.samples, &format!("{kind}.control"), clk_tck, start_ms);
    let labelled: Vec<(CpuPoint, Window)> = points
        .iter()
        .map(|p| (*p, classify(run, kind, p.t0_ms, p.t1_ms)))
        .collect();
    let pick = |w: Window| -> Vec<f64> {
        labelled
            .iter()
            .filter(|(_, l)| *l == w)
            .map(|(p, _)| p.cpu_pct)
            .collect()
    };
    let probe: Vec<f64> = cpu_points(
        &run.samples,
        &format!("{kind}.control_probe"),
        clk_tck,
        start_ms,
    )
    .iter()
    .map(|p| p.cpu_pct)
    .collect();
    let windows_with = run
        .phases
        .iter()
        .filter(|p| p.kind == kind && p.event == PhaseEvent::On)
        .count();
    let (mut secs, mut rocks, mut all) = (0.0, 0u64, 0u64);
    for run in &k.control_runs {
        let mut counter = EventCounter::default();
        for r in run
            .iter()
            .filter(|r| r.header.kind == ckb_probe::model::Kind::Interval)
        {
            let (a, b, c) = counter.events(r);
            secs += r.header.interval_secs;
            rocks += a;
            all += a + b + c;
        }
    }
    (
        Overhead {
            with: stat(&pick(Window::With)),
            without: stat(&pick(Window::Without)),
            probe: stat(&probe),
            windows_with,
            control_rocksdb_per_sec: (secs > 0.0).then(|| rocks as f64 / secs),
            control_events_per_sec: (secs > 0.0).then(|| all as f64 / secs),
        },
        labelled,
    )
}

/// RSS trend of the subject's ckb-probe (S-2).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RssTrend {
    /// Slope over the whole run, MB per hour.
    pub slope_all: Option<f64>,
    /// Slope after the settling period (`settle_minutes`), MB per hour: what S-2 is judged on.
    pub slope_steady: Option<f64>,
    pub settle_minutes: f64,
    pub first_mb: f64,
    pub last_mb: f64,
    pub max_mb: f64,
}

impl RssTrend {
    /// Growth over 48 h at the steady slope.
    pub fn growth_48h(&self) -> Option<f64> {
        self.slope_steady.map(|s| s * 48.0)
    }
}

pub fn rss_trend(points: &[CpuPoint], duration_min: f64) -> RssTrend {
    // Allocations settle in the first minutes (maps, symbol tables, histograms of every
    // operation and system call seen); S-2 is about growth after that.
    let settle = (duration_min * 0.1).clamp(0.5, 10.0);
    let all: Vec<(f64, f64)> = points.iter().map(|p| (p.minute / 60.0, p.rss_mb)).collect();
    let steady: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.minute >= settle)
        .map(|p| (p.minute / 60.0, p.rss_mb))
        .collect();
    RssTrend {
        slope_all: slope(&all),
        slope_steady: slope(&steady),
        settle_minutes: settle,
        first_mb: points.first().map_or(0.0, |p| p.rss_mb),
        last_mb: points.last().map_or(0.0, |p| p.rss_mb),
        max_mb: points.iter().map(|p| p.rss_mb).fold(0.0, f64::max),
    }
}

/// The testbed's own counters per chunk: calls per second it made to traced functions.
pub fn testbed_calls(k: &KindRun, every_secs: f64, start_ms: u64) -> Vec<(f64, f64)> {
    let Some(ms) = k.measured_start_ms else {
        return Vec::new();
    };
    let mut by_chunk: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for s in &k.testbed_seconds {
        // `compact` is the storm's manual compaction: not a traced function.
        let calls: u64 = s
            .cats
            .iter()
            .filter(|(c, _)| c.as_str() != "compact")
            .map(|(_, (n, _))| n)
            .sum();
        let idx = (s.t.saturating_sub(1) as f64 / every_secs) as u64;
        let e = by_chunk.entry(idx).or_default();
        e.0 += calls;
        e.1 += 1;
    }
    by_chunk
        .into_iter()
        .map(|(idx, (calls, secs))| {
            let end_ms = ms + ((idx + 1) as f64 * every_secs * 1000.0) as u64;
            (minutes(end_ms, start_ms), calls as f64 / secs as f64)
        })
        .collect()
}

/// Machine-wide CPU busy % (all cores) and load between samples: how shared the host was.
pub fn machine_busy(run: &Run) -> Vec<(f64, f64)> {
    run.machine
        .windows(2)
        .filter(|w| w[1].total_ticks > w[0].total_ticks)
        .map(|w| {
            (
                w[1].load1,
                (w[1].busy_ticks - w[0].busy_ticks) as f64
                    / (w[1].total_ticks - w[0].total_ticks) as f64
                    * 100.0,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_slope() {
        let s = stat(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.max, s.avg, s.p99, s.n), (1.0, 3.0, 2.0, 3.0, 3));
        assert!(stat(&[]).is_none());
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(stat(&v).unwrap().p99, 198.0);
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 2.0 * f64::from(i) + 1.0))
            .collect();
        assert!((slope(&line).unwrap() - 2.0).abs() < 1e-12);
        assert!(slope(&[(1.0, 1.0)]).is_none());
    }

    #[test]
    fn cpu_from_ticks() {
        let s = |t, pid, u, st, rss| Sample {
            t_ms: t,
            role: "x.probe".into(),
            pid,
            utime: u,
            stime: st,
            rss_kb: rss,
            threads: 1,
        };
        // 50 ticks in 10 s at 100 ticks/s = 5 % of a core; a new pid starts a new series.
        let p = cpu_points(
            &[
                s(0, 1, 0, 0, 1024),
                s(10_000, 1, 30, 20, 2048),
                s(20_000, 2, 0, 0, 10),
            ],
            "x.probe",
            100.0,
            0,
        );
        assert_eq!(p.len(), 1);
        assert!((p[0].cpu_pct - 5.0).abs() < 1e-9);
        assert_eq!(p[0].rss_mb, 2048.0 * 1024.0 / 1e6);
    }
}
