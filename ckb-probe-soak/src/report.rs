//! REPORT.md, the charts it links, and `summary.json` (the headline figures, for tests and
//! tooling), all from one [`Run`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use ckb_probe::model::End;
use ckb_probe_common::rocksdb::Op;
use serde::Serialize;

use crate::analyze::{self, *};
use crate::chart::{self, Panel, Series};
use crate::data::{KindRun, Run};

/// Pass, fail, or not measured by this run.
#[cfg(test)]
mod tests {
    #[test]
    fn signed_zero_has_no_sign() {
        assert_eq!(super::signed(-0.0001, 3), "0.000");
        assert_eq!(super::signed(0.0004, 3), "0.000");
        assert_eq!(super::signed(0.012, 3), "+0.012");
        assert_eq!(super::signed(-1.5, 2), "-1.50");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    NotMeasured,
}

impl Verdict {
    fn of(ok: bool) -> Verdict {
        if ok { Verdict::Pass } else { Verdict::Fail }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "✅ pass",
            Verdict::Fail => "❌ fail",
            Verdict::NotMeasured => "— not measured",
        }
    }
}

/// One row of the thresholds table.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: String,
    pub kind: String,
    pub threshold: String,
    pub measured: String,
    pub verdict: Verdict,
}

/// Headline figures of one target kind (also written to `summary.json`).
#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    pub kind: String,
    pub node: String,
    pub intervals: usize,
    pub duration_secs: f64,
    pub events: u64,
    pub rocksdb_calls: u64,
    pub syscalls: u64,
    pub net_events: u64,
    pub events_per_sec: Option<Stat>,
    pub lost_events: u64,
    pub not_recorded: u64,
    pub unpaired: u64,
    pub loss_pct: f64,
    /// Captured calls per operation (the summary report's counts).
    pub captured: BTreeMap<String, u64>,
    /// Generated calls per operation (the testbed's ground truth).
    pub generated: BTreeMap<String, u64>,
    pub probe_cpu: Option<Stat>,
    pub probe_rss_mb: Option<Stat>,
    pub subject_cpu: Option<Stat>,
    pub rss: RssTrend,
    pub overhead: Overhead,
    pub storms: Vec<StormCase>,
    pub survival: Survival,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub command: String,
    pub kinds: Vec<KindSummary>,
    pub checks: Vec<Check>,
    pub kernel_log: KernelLog,
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

/// Signed, with a rounded-away sign for values that print as zero (no "-0.000").
fn signed(v: f64, digits: usize) -> String {
    let s = format!("{v:+.digits$}");
    if s[1..].chars().all(|c| c == '0' || c == '.') {
        format!("{:.digits$}", 0.0)
    } else {
        s
    }
}

fn signed3(v: f64) -> String {
    signed(v, 3)
}

fn signed2(v: f64) -> String {
    signed(v, 2)
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "—".to_string(), f)
}

fn thousands(n: u64) -> String {
    ckb_probe::view::thousands(n)
}

fn hms_utc(epoch: f64) -> String {
    let s = epoch.rem_euclid(86_400.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn stat_row(name: &str, unit: &str, s: Option<Stat>, digits: usize) -> String {
    match s {
        Some(s) => format!(
            "| {name} | {unit} | {:.d$} | {:.d$} | {:.d$} | {:.d$} | {} |\n",
            s.min,
            s.max,
            s.avg,
            s.p99,
            s.n,
            d = digits
        ),
        None => format!("| {name} | {unit} | — | — | — | — | 0 |\n"),
    }
}

struct KindOut {
    summary: KindSummary,
    md: String,
    checks: Vec<Check>,
}

/// Writes `REPORT.md`, `charts/*.svg` and `summary.json` into the run directory.
pub fn generate(run: &Run) -> Result<Summary> {
    let charts = run.dir.join("charts");
    std::fs::create_dir_all(&charts).with_context(|| format!("creating {}", charts.display()))?;
    let klog = analyze::kernel_log(run);
    let mut outs = Vec::new();
    for k in &run.kinds {
        outs.push(kind_section(run, k, &charts)?);
    }
    let mut checks: Vec<Check> = outs.iter().flat_map(|o| o.checks.clone()).collect();
    let s3_ok = klog.bpf.is_empty() && klog.warnings.is_empty();
    checks.push(Check {
        id: "S-3".into(),
        kind: "machine".into(),
        threshold: "no kernel warnings, no BPF-related kernel log records".into(),
        measured: format!(
            "{} new kernel log records: {} BPF-related, {} warnings",
            klog.records,
            klog.bpf.len(),
            klog.warnings.len()
        ),
        verdict: Verdict::of(s3_ok),
    });
    checks.push(Check {
        id: "S-4".into(),
        kind: "—".into(),
        threshold: "recovery when the monitored process restarts".into(),
        measured: "not part of the soak run (its targets are not restarted during it)".into(),
        verdict: Verdict::NotMeasured,
    });
    checks.push(Check {
        id: "P-4".into(),
        kind: "—".into(),
        threshold: "block sync speed degradation < 1 % over a 2 h IBD".into(),
        measured: "not part of the soak run (needs a 2 h initial block download of a public chain)"
            .into(),
        verdict: Verdict::NotMeasured,
    });

    let mut md = String::new();
    header(run, &checks, &outs, &mut md);
    for o in &outs {
        md.push_str(&o.md);
    }
    kernel_section(&klog, &mut md);
    reproduction(run, &mut md);
    std::fs::write(run.dir.join("REPORT.md"), &md).context("writing REPORT.md")?;

    let summary = Summary {
        command: run.env.text("command").to_string(),
        kinds: outs.into_iter().map(|o| o.summary).collect(),
        checks,
        kernel_log: klog,
    };
    std::fs::write(
        run.dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .context("writing summary.json")?;
    Ok(summary)
}

fn header(run: &Run, checks: &[Check], outs: &[KindOut], md: &mut String) {
    let dur = run.env.num("duration_secs").unwrap_or(0.0);
    let _ = writeln!(md, "# ckb-probe stability (soak) report\n");
    let _ = writeln!(
        md,
        "Generated by `ckb-probe-soak-report` from the files of one run of `{}`: ckb-probe's own NDJSON \
         (read back with `ckb_probe::view::ndjson::parse`, the typed reports every live view renders), \
         /proc samples every {} s, the kernel log, and the testbed's ground truth. Nothing here was typed by hand.\n",
        run.env.text("command"),
        run.env.text("sample_secs")
    );
    let _ = writeln!(
        md,
        "Run: {} → {} UTC ({:.0} min), target `{}`, kernel {}, {} × {}, commit `{}`.\n",
        run.env.text("started_utc"),
        run.env.text("ended_utc"),
        dur / 60.0,
        run.env.text("target"),
        run.env.text("kernel"),
        run.env.text("cpus"),
        run.env.text("cpu"),
        run.env.text("ckb_probe_commit"),
    );
    let _ = writeln!(md, "## Summary against the thresholds (spec 6.4)\n");
    let _ = writeln!(
        md,
        "| criterion | target | threshold | measured | verdict |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for c in checks {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            c.id,
            c.kind,
            c.threshold,
            c.measured,
            c.verdict.label()
        );
    }
    let _ = writeln!(md);
    if dur < 48.0 * 3600.0 {
        let _ = writeln!(
            md,
            "S-1 and S-2 name 48 hours; this run lasted {:.1} h. S-2 is judged on the measured RSS slope \
             extrapolated to 48 h; the 48 h run is the same command with `--duration 172800`.\n",
            dur / 3600.0
        );
    }
    for o in outs {
        if let Some(s) = &o.summary.events_per_sec
            && s.avg < P3_LOAD_EVENTS_PER_SEC
        {
            let _ = writeln!(
                md,
                "Note: on the `{}` target the event rate averaged {}/s, below P-3's 10,000/s; its loss \
                 figure stands for the rate it reached.\n",
                o.summary.kind,
                thousands(s.avg as u64)
            );
        }
    }
}

fn kind_section(run: &Run, k: &KindRun, charts: &Path) -> Result<KindOut> {
    let start_ms = run
        .env
        .num("run_start_ms")
        .map(|v| v as u64)
        .or_else(|| run.samples.first().map(|s| s.t_ms))
        .unwrap_or(0);
    let clk = run.env.num("clk_tck").unwrap_or(100.0);
    let every = run.env.num("sample_secs").unwrap_or(10.0);
    let dur_min = run.env.num("duration_secs").unwrap_or(0.0) / 60.0;
    let name = k.name.as_str();
    let title = if name == "testbed" {
        "the CKB-shaped testbed"
    } else {
        "the real CKB dev-chain node"
    };
    let mut md = String::new();
    let mut checks = Vec::new();

    let probe = cpu_points(&run.samples, &format!("{name}.probe"), clk, start_ms);
    let subject = cpu_points(&run.samples, &format!("{name}.subject"), clk, start_ms);
    let (ovh, labelled) = overhead(run, k, clk, start_ms);
    let chunks = analyze::chunks(&k.intervals, every, start_ms);
    let rss = rss_trend(&probe, dur_min);
    let storms = storm_cases(run, k);
    let surv = survival(run, k);
    let node = k
        .summary
        .as_ref()
        .or(k.intervals.first())
        .map_or_else(String::new, |r| r.header.node.clone());

    // Totals straight from the interval reports (every event ckb-probe handed over).
    let mut totals = Chunk::default();
    for c in &chunks {
        totals.secs += c.secs;
        totals.rocksdb_calls += c.rocksdb_calls;
        totals.syscalls += c.syscalls;
        totals.net_events += c.net_events;
        totals.lost += c.lost;
        totals.not_recorded += c.not_recorded;
        totals.unpaired += c.unpaired;
    }
    let events = totals.events();
    let loss_pct = if events > 0 {
        (totals.lost + totals.not_recorded) as f64
            / (events + totals.lost + totals.not_recorded) as f64
            * 100.0
    } else {
        0.0
    };
    let eps: Vec<f64> = chunks
        .iter()
        .filter(|c| c.secs > 0.0)
        .map(Chunk::events_per_sec)
        .collect();
    let eps_stat = stat(&eps);
    let probe_cpu = stat(&probe.iter().map(|p| p.cpu_pct).collect::<Vec<_>>());
    let probe_rss = stat(&probe.iter().map(|p| p.rss_mb).collect::<Vec<_>>());
    let subject_cpu = stat(&subject.iter().map(|p| p.cpu_pct).collect::<Vec<_>>());

    let (fid_ops, fid_fns) = match (&k.truth, &k.summary) {
        (Some(t), Some(s)) => fidelity(t, s),
        _ => (Vec::new(), Vec::new()),
    };
    let captured: BTreeMap<String, u64> = k
        .summary
        .as_ref()
        .and_then(|s| s.rocksdb.as_ref())
        .map(|r| {
            r.stats
                .operations
                .iter()
                .map(|(op, o)| (op.to_string(), o.count))
                .collect()
        })
        .unwrap_or_default();
    let generated: BTreeMap<String, u64> = fid_ops
        .iter()
        .map(|f| (f.name.clone(), f.generated))
        .collect();

    // ---- checks
    let expected_end = if name == "testbed" {
        End::TargetExited
    } else {
        End::Duration
    };
    checks.push(Check {
        id: "S-1".into(),
        kind: name.into(),
        threshold: "no crash, panic or restart".into(),
        measured: format!(
            "exit {}, end `{}`, {} ckb-probe pid(s), {} interval reports, longest gap {:.1} s, {}",
            surv.exit_code.map_or("?".to_string(), |c| c.to_string()),
            surv.end.as_deref().unwrap_or("none (no summary)"),
            surv.probe_pids,
            surv.intervals,
            surv.max_gap_secs,
            if surv.panicked {
                "panicked"
            } else {
                "no panic"
            }
        ),
        verdict: Verdict::of(surv.ok(expected_end)),
    });
    let (p1_measured, p1_verdict) = match ovh.delta_pp() {
        Some(d) => (
            format!(
                "{:+.2} pp ({:.1} % with vs {:.1} % without, {:+.1} % relative; {} windows); the control's ckb-probe itself: {:.2} %",
                d,
                ovh.with.map_or(0.0, |s| s.avg),
                ovh.without.map_or(0.0, |s| s.avg),
                ovh.delta_rel_pct().unwrap_or(0.0),
                ovh.windows_with,
                ovh.probe.map_or(0.0, |s| s.avg)
            ),
            Verdict::of(d <= P1_MAX_CPU_PP),
        ),
        None => (
            "no complete with/without windows".into(),
            Verdict::NotMeasured,
        ),
    };
    checks.push(Check {
        id: "P-1".into(),
        kind: name.into(),
        threshold: "target CPU with − without probes ≤ 3 pp of one core".into(),
        measured: p1_measured,
        verdict: p1_verdict,
    });
    checks.push(Check {
        id: "P-2".into(),
        kind: name.into(),
        threshold: "ckb-probe RSS ≤ 50 MB".into(),
        measured: format!(
            "max {:.1} MB, avg {:.1} MB",
            rss.max_mb,
            probe_rss.map_or(0.0, |s| s.avg)
        ),
        verdict: if probe.is_empty() {
            Verdict::NotMeasured
        } else {
            Verdict::of(rss.max_mb <= P2_MAX_RSS_MB)
        },
    });
    checks.push(Check {
        id: "P-3".into(),
        kind: name.into(),
        threshold: "event loss < 0.1 % at ≥ 10,000 events/s".into(),
        measured: format!(
            "{} lost + {} not recorded of {} events ({:.4} %) at {} events/s on average",
            thousands(totals.lost),
            thousands(totals.not_recorded),
            thousands(events),
            loss_pct,
            eps_stat.map_or_else(|| "—".into(), |s| thousands(s.avg as u64))
        ),
        verdict: Verdict::of(loss_pct < P3_MAX_LOSS_PCT),
    });
    checks.push(Check {
        id: "S-2".into(),
        kind: name.into(),
        threshold: "RSS growth ≤ 5 MB over 48 h".into(),
        measured: format!(
            "slope {} MB/h after the first {:.0} min ({} MB/h over the whole run) → {} MB per 48 h; RSS {:.2} MB at the first sample, {:.2} MB at the last",
            opt(rss.slope_steady, signed3),
            rss.settle_minutes,
            opt(rss.slope_all, signed3),
            opt(rss.growth_48h(), signed2),
            rss.first_mb,
            rss.last_mb,
        ),
        verdict: match rss.growth_48h() {
            Some(g) => Verdict::of(g <= S2_MAX_GROWTH_MB_48H),
            None => Verdict::NotMeasured,
        },
    });
    if !storms.is_empty() {
        let caught = storms
            .iter()
            .filter(|s| s.delay().is_some_and(|d| d <= F7_MAX_ALERT_SECS))
            .count();
        let worst = storms
            .iter()
            .filter_map(StormCase::delay)
            .fold(0.0, f64::max);
        checks.push(Check {
            id: "F-7".into(),
            kind: name.into(),
            threshold: "alert within 15 s of a latency spike".into(),
            measured: format!(
                "{caught} of {} storms alerted within 15 s (slowest {:.0} s)",
                storms.len(),
                worst
            ),
            verdict: Verdict::of(caught == storms.len()),
        });
    }
    if !fid_ops.is_empty() {
        let exact = fid_ops.iter().all(|f| f.diff() == 0);
        let generated_all: u64 = fid_ops.iter().map(|f| f.generated).sum();
        let cap: u64 = fid_ops.iter().map(|f| f.captured).sum();
        checks.push(Check {
            id: "fidelity".into(),
            kind: name.into(),
            threshold: "captured = generated (ground truth), per operation".into(),
            measured: format!(
                "{} captured of {} generated ({:.4} %)",
                thousands(cap),
                thousands(generated_all),
                if generated_all > 0 {
                    cap as f64 / generated_all as f64 * 100.0
                } else {
                    0.0
                }
            ),
            verdict: Verdict::of(exact),
        });
    }

    // ---- charts
    let storm_spans: Vec<(f64, f64)> = storms
        .iter()
        .map(|s| {
            let m = minutes((s.start_epoch * 1000.0) as u64, start_ms);
            (m, m + s.secs / 60.0)
        })
        .collect();
    let alert_marks: Vec<(f64, String)> = storms
        .iter()
        .filter_map(|s| {
            s.alert_epoch
                .map(|a| (minutes((a * 1000.0) as u64, start_ms), "alert".to_string()))
        })
        .collect();
    let f = |n: &str| format!("{name}-{n}.svg");
    chart::stacked(
        &charts.join(f("probe")),
        "minutes since start",
        &[
            Panel {
                title: format!("ckb-probe CPU ({name} subject, all layers)"),
                y_label: "% of one core".into(),
                series: vec![Series::line(
                    "ckb-probe CPU %",
                    chart::BLUE,
                    probe.iter().map(|p| (p.minute, p.cpu_pct)).collect(),
                )],
                y_from_zero: true,
                shade: storm_spans.clone(),
                ..Panel::default()
            },
            Panel {
                title: format!(
                    "ckb-probe RSS (slope {} MB/h after {:.0} min)",
                    opt(rss.slope_steady, signed3),
                    rss.settle_minutes
                ),
                y_label: "MB".into(),
                series: vec![Series::line(
                    "RSS MB",
                    chart::GREEN,
                    probe.iter().map(|p| (p.minute, p.rss_mb)).collect(),
                )],
                y_from_zero: true,
                hlines: vec![(P2_MAX_RSS_MB, "P-2 limit 50 MB".into())],
                ..Panel::default()
            },
        ],
        1000,
    )?;
    let control_rss: Vec<(f64, f64)> = labelled.iter().map(|(p, _)| (p.minute, p.rss_mb)).collect();
    let with: Vec<(f64, f64)> = labelled
        .iter()
        .filter(|(_, w)| *w == Window::With)
        .map(|(p, _)| (p.minute, p.cpu_pct))
        .collect();
    let without: Vec<(f64, f64)> = labelled
        .iter()
        .filter(|(_, w)| *w == Window::Without)
        .map(|(p, _)| (p.minute, p.cpu_pct))
        .collect();
    chart::stacked(
        &charts.join(f("target-cpu")),
        "minutes since start",
        &[Panel {
            title: "target CPU: subject (always traced) and control (alternating windows)".into(),
            y_label: "% of one core".into(),
            series: vec![
                Series::line(
                    "subject, probes attached",
                    chart::GREY,
                    subject.iter().map(|p| (p.minute, p.cpu_pct)).collect(),
                ),
                Series::dots("control, with probes", chart::RED, with),
                Series::dots("control, without probes", chart::BLUE, without),
            ],
            y_from_zero: true,
            shade: storm_spans.clone(),
            ..Panel::default()
        }, Panel {
            title: "target RSS (mostly RocksDB memtables: 20 column families, 64 MiB write buffer each)".into(),
            y_label: "MB".into(),
            series: vec![
                Series::line("subject", chart::GREY, subject.iter().map(|p| (p.minute, p.rss_mb)).collect()),
                Series::line("control", chart::BLUE, control_rss),
            ],
            y_from_zero: true,
            shade: storm_spans.clone(),
            ..Panel::default()
        }],
        1000,
    )?;
    let mut p99_series = Vec::new();
    for (i, op) in Op::ALL.iter().enumerate() {
        let pts: Vec<(f64, f64)> = chunks
            .iter()
            .filter_map(|c| c.p99_us.get(op.name()).map(|v| (c.minute, *v)))
            .collect();
        if !pts.is_empty() {
            p99_series.push(Series::line(
                op.name(),
                chart::PALETTE[i % chart::PALETTE.len()],
                pts,
            ));
        }
    }
    chart::stacked(
        &charts.join(f("p99")),
        "minutes since start",
        &[Panel {
            title: format!("RocksDB P99 latency per operation, per {every:.0} s (storms shaded)"),
            y_label: "µs (log)".into(),
            series: p99_series,
            log_y: true,
            shade: storm_spans.clone(),
            marks: alert_marks.clone(),
            ..Panel::default()
        }],
        1000,
    )?;
    let mut ev_series = vec![
        Series::line(
            "all events/s (captured)",
            chart::BLUE,
            chunks
                .iter()
                .map(|c| (c.minute, c.events_per_sec()))
                .collect(),
        ),
        Series::line(
            "RocksDB calls/s (captured)",
            chart::GREEN,
            chunks
                .iter()
                .filter(|c| c.secs > 0.0)
                .map(|c| (c.minute, c.rocksdb_calls as f64 / c.secs))
                .collect(),
        ),
        Series::line(
            "system calls/s (captured)",
            chart::PURPLE,
            chunks
                .iter()
                .filter(|c| c.secs > 0.0)
                .map(|c| (c.minute, c.syscalls as f64 / c.secs))
                .collect(),
        ),
    ];
    let tb = testbed_calls(k, every, start_ms);
    // P-3's load as a line only where the run comes near it (else it flattens the data).
    let near_p3 = eps_stat.is_some_and(|s| s.max >= P3_LOAD_EVENTS_PER_SEC / 2.0);
    if !tb.is_empty() {
        ev_series.push(Series::dots(
            "RocksDB calls/s (testbed's own counters)",
            chart::ORANGE,
            tb,
        ));
    }
    let mut event_panels = vec![Panel {
        title: "event throughput".into(),
        y_label: "per second".into(),
        series: ev_series,
        y_from_zero: true,
        shade: storm_spans.clone(),
        hlines: if near_p3 {
            vec![(P3_LOAD_EVENTS_PER_SEC, "P-3 load 10,000/s".into())]
        } else {
            Vec::new()
        },
        ..Panel::default()
    }];
    // A node's own counter: its tip, and its control peer's (which syncs from it).
    let tip = |f: fn(&crate::data::Tip) -> Option<u64>| -> Vec<(f64, f64)> {
        k.tips
            .iter()
            .filter_map(|t| f(t).map(|v| (minutes(t.t_ms, start_ms), v as f64)))
            .collect()
    };
    if !k.tips.is_empty() {
        event_panels.push(Panel {
            title: "the node's own counter: tip block number".into(),
            y_label: "block".into(),
            series: vec![
                Series::line("node (mining, traced)", chart::GREEN, tip(|t| t.node)),
                Series::line("control peer (syncing)", chart::BLUE, tip(|t| t.control)),
            ],
            y_from_zero: true,
            ..Panel::default()
        });
    }
    chart::stacked(
        &charts.join(f("events")),
        "minutes since start",
        &event_panels,
        1000,
    )?;

    // ---- markdown
    let _ = writeln!(md, "## Target: {title}\n");
    let _ = writeln!(
        md,
        "Node as ckb-probe names it: `{node}`. One ckb-probe (`rocksdb --with syscall,net`, 1 s interval) traced \
         the subject for the whole run; a control process of the same kind was attached and detached in \
         alternating windows of {} s by short ckb-probe runs (P-1).\n",
        run.env.text("window_secs")
    );
    let _ = writeln!(md, "### Resource consumption (every {every:.0} s)\n");
    let _ = writeln!(md, "| metric | unit | min | max | avg | P99 | samples |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    md.push_str(&stat_row("ckb-probe CPU", "% of one core", probe_cpu, 2));
    md.push_str(&stat_row("ckb-probe RSS", "MB", probe_rss, 1));
    md.push_str(&stat_row(
        "subject CPU (probes attached)",
        "% of one core",
        subject_cpu,
        1,
    ));
    md.push_str(&stat_row(
        "control CPU, with probes",
        "% of one core",
        ovh.with,
        1,
    ));
    md.push_str(&stat_row(
        "control CPU, without probes",
        "% of one core",
        ovh.without,
        1,
    ));
    md.push_str(&stat_row(
        "control's ckb-probe CPU (while running)",
        "% of one core",
        ovh.probe,
        2,
    ));
    md.push_str(&stat_row("events captured", "per second", eps_stat, 0));
    md.push_str(&stat_row(
        "events lost or not recorded",
        "per second",
        stat(
            &chunks
                .iter()
                .filter(|c| c.secs > 0.0)
                .map(|c| (c.lost + c.not_recorded) as f64 / c.secs)
                .collect::<Vec<_>>(),
        ),
        3,
    ));
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Totals from the {} interval reports: {} events = {} RocksDB calls + {} system calls + {} network events; \
         {} lost, {} not recorded (map full), {} unpaired returns.\n",
        k.intervals.len(),
        thousands(events),
        thousands(totals.rocksdb_calls),
        thousands(totals.syscalls),
        thousands(totals.net_events),
        thousands(totals.lost),
        thousands(totals.not_recorded),
        thousands(totals.unpaired),
    );
    let _ = writeln!(md, "![ckb-probe CPU and RSS](charts/{})\n", f("probe"));
    let _ = writeln!(
        md,
        "P-1: the control target's CPU averaged **{} %** of one core in the with-probe windows and **{} %** without: \
         **{} percentage points** ({} relative). The spec measures P-1 as that difference. The control's own \
         ckb-probe used {} % of one core while it ran, so probes plus tool cost {} pp together. Spans in which the \
         probe attached or detached are left out.\n",
        opt(ovh.with.map(|s| s.avg), f1),
        opt(ovh.without.map(|s| s.avg), f1),
        opt(ovh.delta_pp(), |v| format!("{v:+.2}")),
        opt(ovh.delta_rel_pct(), |v| format!("{v:+.1} %")),
        opt(ovh.probe.map(|s| s.avg), f2),
        opt(
            ovh.delta_pp()
                .zip(ovh.probe.map(|s| s.avg))
                .map(|(a, b)| a + b),
            |v| format!("{v:+.2}")
        ),
    );
    if let (Some(us), Some(calls)) = (ovh.us_per_rocksdb_call(), ovh.control_rocksdb_per_sec) {
        let _ = writeln!(
            md,
            "While traced, the control made {} RocksDB calls/s ({} events/s with its system calls and network): \
             the added target CPU is **{us:.2} µs per traced RocksDB call**, every layer's cost included. {}\n",
            thousands(calls as u64),
            thousands(ovh.control_events_per_sec.unwrap_or(0.0) as u64),
            if name == "testbed" {
                "The overhead scales with the call rate: this workload runs at P-3's load, about 50 times the \
                 RocksDB calls of a CKB dev-chain node mining (the `ckb` target measures that case directly)."
            } else {
                "This is the node's own call rate: P-1 as a CKB node of this kind would see it."
            },
        );
    }
    let _ = writeln!(
        md,
        "![target CPU with and without probes](charts/{})\n",
        f("target-cpu")
    );
    let _ = writeln!(md, "![RocksDB P99 per operation](charts/{})\n", f("p99"));
    let _ = writeln!(md, "![events per second](charts/{})\n", f("events"));

    // fidelity
    let _ = writeln!(md, "### Event fidelity\n");
    if fid_ops.is_empty() {
        let _ = writeln!(
            md,
            "A real node has no ground truth of its own calls; the calls ckb-probe captured, by operation, were: {}.\n",
            captured
                .iter()
                .map(|(k, v)| format!("{k} {}", thousands(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let _ = writeln!(
            md,
            "Generated = the testbed's exact count of its own calls (`truth.json`); captured = ckb-probe's summary \
             report (probes attached before the first call, the summary written after the testbed exited).\n"
        );
        let _ = writeln!(
            md,
            "| operation | generated | captured | difference | captured % |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for r in &fid_ops {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.name,
                thousands(r.generated),
                thousands(r.captured),
                r.diff(),
                opt(r.captured_pct(), |v| format!("{v:.4}"))
            );
        }
        let _ = writeln!(md, "\n<details><summary>per traced function</summary>\n");
        let _ = writeln!(md, "| function | generated | captured | difference |");
        let _ = writeln!(md, "|---|---:|---:|---:|");
        for r in &fid_fns {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} |",
                r.name,
                thousands(r.generated),
                thousands(r.captured),
                r.diff()
            );
        }
        let _ = writeln!(md, "\n</details>\n");
    }
    let _ = writeln!(
        md,
        "Lost events: {} ({:.4} % of all events, with {} not recorded because a map was full); unpaired returns: {}.\n",
        thousands(totals.lost),
        loss_pct,
        thousands(totals.not_recorded),
        thousands(totals.unpaired)
    );

    // histograms
    let _ = writeln!(md, "### Latency distributions over the whole run\n");
    let _ = writeln!(
        md,
        "From the summary report's histograms (every call since attach). Bars: calls per power-of-two bucket \
         (log scale); line: cumulative fraction.\n"
    );
    if let Some(rs) = k.summary.as_ref().and_then(|s| s.rocksdb.as_ref()) {
        let _ = writeln!(
            md,
            "| operation | calls | avg µs | P50 µs | P99 µs | max µs |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for op in Op::ALL {
            if let Some(o) = rs.stats.operations.get(op.name()) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    op.name(),
                    thousands(o.count),
                    opt(o.avg_us, f1),
                    opt(o.p50_us, f1),
                    opt(o.p99_us, f1),
                    opt(o.max_us, f1)
                );
            }
        }
        let _ = writeln!(md);
        for op in Op::ALL {
            let Some(h) = rs.histograms.get(op.name()) else {
                continue;
            };
            let mut pow: BTreeMap<u32, u64> = BTreeMap::new();
            for b in h {
                *pow.entry(63 - b.low_ns.max(1).leading_zeros()).or_default() += b.count;
            }
            let buckets: Vec<(u32, u64)> = pow.into_iter().collect();
            let file = f(&format!("hist-{}", op.name().to_lowercase()));
            chart::histogram_cdf(&charts.join(&file), op.name(), &buckets)?;
            let _ = writeln!(md, "![{} latency distribution](charts/{file})\n", op.name());
        }
    }

    // storms
    if !storms.is_empty() {
        let _ = writeln!(md, "### Storm case: compaction and write-stall spikes\n");
        let _ = writeln!(
            md,
            "The testbed ran a genuine latency storm (synchronous WAL writes, 256 KiB–1 MiB values, manual \
             compactions of every column family) for {} s every {} s. For each: when it started, when ckb-probe's \
             live table first showed an anomaly that began with it, and the operations it named.\n",
            run.env.text("storm_secs"),
            run.env.text("storm_every_secs")
        );
        let _ = writeln!(
            md,
            "| storm | start (UTC) | alert shown (UTC) | delay | operations | max × baseline |"
        );
        let _ = writeln!(md, "|---:|---|---|---:|---|---:|");
        for s in &storms {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.1} |",
                s.index + 1,
                hms_utc(s.start_epoch),
                s.alert_epoch.map_or("none".into(), hms_utc),
                opt(s.delay(), |v| format!("{v:.0} s")),
                s.operations.join(", "),
                s.max_multiplier
            );
        }
        let _ = writeln!(md);
        if let Some(case) = storms
            .iter()
            .find(|s| s.alert_text.is_some())
            .or(storms.first())
        {
            let series = storm_series(k, case, 60.0);
            let mut panels_series = Vec::new();
            for (i, op) in ["GET", "PUT", "WRITE", "DELETE"].iter().enumerate() {
                let pts: Vec<(f64, f64)> = series
                    .iter()
                    .filter(|s| s.1 == *op)
                    .map(|s| (s.0, s.2))
                    .collect();
                if !pts.is_empty() {
                    panels_series.push(Series::line(format!("{op} avg"), chart::PALETTE[i], pts));
                }
            }
            let mut p99s = Vec::new();
            for (i, op) in ["GET", "PUT", "WRITE", "DELETE"].iter().enumerate() {
                let pts: Vec<(f64, f64)> = series
                    .iter()
                    .filter(|s| s.1 == *op)
                    .map(|s| (s.0, s.3))
                    .collect();
                if !pts.is_empty() {
                    p99s.push(Series::line(format!("{op} P99"), chart::PALETTE[i], pts));
                }
            }
            let marks: Vec<(f64, String)> = case
                .alert_epoch
                .map(|a| vec![(a - case.start_epoch, format!("alert shown {}", hms_utc(a)))])
                .unwrap_or_default();
            let file = f("storm");
            chart::stacked(
                &charts.join(&file),
                "seconds from the storm's start",
                &[
                    Panel {
                        title: format!(
                            "storm {} at {} UTC: average latency per second (before / during / after)",
                            case.index + 1,
                            hms_utc(case.start_epoch)
                        ),
                        y_label: "µs (log)".into(),
                        series: panels_series,
                        log_y: true,
                        shade: vec![(0.0, case.secs)],
                        marks: marks.clone(),
                        ..Panel::default()
                    },
                    Panel {
                        title: "P99 latency per second".into(),
                        y_label: "µs (log)".into(),
                        series: p99s,
                        log_y: true,
                        shade: vec![(0.0, case.secs)],
                        marks,
                        ..Panel::default()
                    },
                ],
                1000,
            )?;
            let _ = writeln!(
                md,
                "Annotated case: storm {} (shaded: {} s from {} UTC). The vertical line is the report in which the alert \
                 first showed{}.\n",
                case.index + 1,
                case.secs,
                hms_utc(case.start_epoch),
                case.delay().map_or(String::new(), |d| format!(
                    ", {d:.0} s after the storm began"
                ))
            );
            let _ = writeln!(md, "![storm case](charts/{file})\n");
            if let Some(t) = &case.alert_text {
                let _ = writeln!(
                    md,
                    "The alert as the live table printed it (`view::rocksdb::status` of that report):\n"
                );
                let _ = writeln!(md, "```\n{t}\n```\n");
            }
            if !case.correlations.is_empty() {
                let _ = writeln!(md, "Cross-layer correlations reported during the storm:\n");
                for c in &case.correlations {
                    let _ = writeln!(md, "- {c}");
                }
                let _ = writeln!(md);
            }
        }
    }

    if !k.tips.is_empty() {
        let first = k.tips.iter().find_map(|t| t.node.map(|n| (t.t_ms, n)));
        let last = k
            .tips
            .iter()
            .rev()
            .find_map(|t| t.node.map(|n| (t.t_ms, n)));
        if let (Some(a), Some(b)) = (first, last)
            && b.0 > a.0
        {
            let _ = writeln!(
                md,
                "The node mined {} blocks in {:.1} min ({:.1} blocks/min); its control peer followed to block {}.\n",
                b.1 - a.1,
                (b.0 - a.0) as f64 / 60_000.0,
                (b.1 - a.1) as f64 / ((b.0 - a.0) as f64 / 60_000.0),
                k.tips
                    .iter()
                    .rev()
                    .find_map(|t| t.control)
                    .map_or("?".into(), |v| v.to_string())
            );
        }
    }

    let summary = KindSummary {
        kind: name.into(),
        node,
        intervals: k.intervals.len(),
        duration_secs: totals.secs,
        events,
        rocksdb_calls: totals.rocksdb_calls,
        syscalls: totals.syscalls,
        net_events: totals.net_events,
        events_per_sec: eps_stat,
        lost_events: totals.lost,
        not_recorded: totals.not_recorded,
        unpaired: totals.unpaired,
        loss_pct,
        captured,
        generated,
        probe_cpu,
        probe_rss_mb: probe_rss,
        subject_cpu,
        rss,
        overhead: ovh,
        storms,
        survival: surv,
    };
    Ok(KindOut {
        summary,
        md,
        checks,
    })
}

fn kernel_section(k: &KernelLog, md: &mut String) {
    let _ = writeln!(md, "## Kernel log (S-3)\n");
    let _ = writeln!(
        md,
        "Every `/dev/kmsg` record that appeared during the run was kept (`kmsg.log`): {} records, {} sequence numbers \
         skipped. BPF-related (bpf, uprobe, perf_event, verifier): {}. Kernel warnings (WARNING:, BUG:, Oops, Call \
         Trace): {}. Other records at warning priority or worse (not ckb-probe's, listed for review): {}.\n",
        k.records,
        k.seq_gaps,
        k.bpf.len(),
        k.warnings.len(),
        k.other_high.len()
    );
    for (title, lines) in [
        ("BPF-related", &k.bpf),
        ("warnings", &k.warnings),
        ("other", &k.other_high),
    ] {
        if !lines.is_empty() {
            let _ = writeln!(md, "{title}:\n\n```");
            for l in lines.iter().take(30) {
                let _ = writeln!(md, "{l}");
            }
            let _ = writeln!(md, "```\n");
        }
    }
}

fn reproduction(run: &Run, md: &mut String) {
    let e = &run.env;
    let busy = machine_busy(run);
    let load = stat(&busy.iter().map(|b| b.0).collect::<Vec<_>>());
    let cpu = stat(&busy.iter().map(|b| b.1).collect::<Vec<_>>());
    let _ = writeln!(md, "## Reproduction\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, label) in [
        ("kernel", "kernel"),
        ("os", "OS"),
        ("cpu", "CPU"),
        ("cpus", "cores"),
        ("ckb_probe_version", "ckb-probe"),
        ("ckb_probe_commit", "ckb-probe commit"),
        ("rustc", "rustc"),
        ("ckb_version", "CKB"),
        ("started_utc", "started"),
        ("ended_utc", "ended"),
    ] {
        let v = match (k, e.get(k)) {
            ("ckb_version", None) => "none (no CKB node in this run)",
            _ => e.text(k),
        };
        let _ = writeln!(md, "| {label} | {v} |");
    }
    let _ = writeln!(
        md,
        "| memory | {:.1} GiB |",
        e.num("mem_total_kb").unwrap_or(0.0) / 1024.0 / 1024.0
    );
    let _ = writeln!(
        md,
        "| parameters | rate {} iterations/s, windows {} s, warm-up {} s, storms {} s every {} s from {} s, samples every {} s |",
        e.text("rate"),
        e.text("window_secs"),
        e.text("warmup_secs"),
        e.text("storm_secs"),
        e.text("storm_every_secs"),
        e.text("storm_after_secs"),
        e.text("sample_secs")
    );
    let _ = writeln!(
        md,
        "| machine load | load average {} at start, {} at end; during the run 1-min load avg {} (max {}), all cores busy {} % on average |\n",
        e.text("loadavg_start"),
        e.text("loadavg_end"),
        opt(load.map(|s| s.avg), f1),
        opt(load.map(|s| s.max), f1),
        opt(cpu.map(|s| s.avg), f1),
    );
    let _ = writeln!(
        md,
        "The host is shared: other work on it shows in the load above and in every CPU figure; the with/without \
         windows of P-1 alternate within the same run so that this noise falls on both sides alike.\n"
    );
    let _ = writeln!(
        md,
        "Command (as root, from the repository root):\n\n```\n{}\n```\n",
        e.text("command")
    );
    let _ = writeln!(
        md,
        "The report is regenerated from the run directory with `target/release/ckb-probe-soak-report --dir DIR`."
    );
}
