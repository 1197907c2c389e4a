//! What every tracing command shares: choosing the target, validating run-length flags, the
//! signal-aware report loop, how a run ends, and the envelope of each report (human text or one
//! NDJSON object). A command implements [`Layer`] for its data; running several layers in one
//! process (`rocksdb --with syscall,net`) is the same loop over several layers plus the
//! cross-layer correlation rules.

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use ckb_probe::{
    analysis::{
        anomaly::Anomaly,
        correlate::{Correlation, Correlator, Disconnects},
        syscall::SysInterval,
    },
    error::InputError,
    target::{self, Process},
    view,
};
use serde_json::{Map, Value, json};

/// Flags every tracing command takes.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// PID of the CKB node (or any process); default: the one process running `ckb run`.
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
}

impl RunArgs {
    /// Validated run length and output mode.
    pub fn limits(&self) -> Result<Limits> {
        at_least_one("count", self.count)?;
        Ok(Limits {
            interval: positive("interval", self.interval)?,
            duration: self.duration.map(|d| positive("duration", d)).transpose()?,
            count: self.count,
            json: self.json,
        })
    }
}

/// A warm-up flag: 0 turns it off, else a positive number of seconds.
pub fn warmup(v: f64) -> Result<Duration> {
    if v == 0.0 {
        Ok(Duration::ZERO)
    } else {
        positive("warmup", v)
    }
}

/// The process to trace: `--pid`, or the one running CKB node (said on stderr).
pub fn target(pid: Option<u32>) -> Result<Process> {
    Ok(match pid {
        Some(pid) => target::process(pid)?,
        None => {
            let p = target::pick_ckb_node()?;
            eprintln!(
                "ckb-probe: picked the CKB node with PID {} ({})",
                p.pid,
                p.cmdline.join(" ")
            );
            p
        }
    })
}

/// A positive number of seconds from a flag.
pub fn positive(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 1e7) {
        return Err(InputError::Other(format!(
            "--{name} must be a positive number of seconds, got {v}"
        ))
        .into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// A count flag that must be at least 1 when given.
pub fn at_least_one(name: &str, v: Option<u64>) -> Result<()> {
    if v == Some(0) {
        return Err(InputError::Other(format!("--{name} must be at least 1")).into());
    }
    Ok(())
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Signal,
    TargetExited,
    Duration,
    Count,
}

impl End {
    pub fn name(self) -> &'static str {
        match self {
            End::Signal => "signal",
            End::TargetExited => "target_exited",
            End::Duration => "duration",
            End::Count => "count",
        }
    }
}

/// What a layer hands the other layers' rules.
#[derive(Default)]
pub struct Signals {
    pub anomalies: Vec<Anomaly>,
    pub sys: Option<SysInterval>,
    pub net: Option<Disconnects>,
}

/// One layer's part of a report.
#[derive(Default)]
pub struct Piece {
    pub text: String,
    pub json: Map<String, Value>,
    /// Fields already serialized (large arrays written without building a JSON tree).
    pub raw_json: Vec<(&'static str, String)>,
    pub signals: Signals,
}

/// A tracing layer as the runner drives it.
pub trait Layer {
    /// Its key in a combined JSON object.
    fn name(&self) -> &'static str;
    /// Moves pending events out of the kernel; returns how many (more means poll sooner).
    fn poll(&mut self) -> usize {
        0
    }
    /// The interval ending now.
    fn interval(&mut self, now: Instant) -> Result<Piece>;
    /// The whole run, after the final interval.
    fn summary(&mut self, end: End) -> Result<Piece>;
}

/// Run-length flags.
pub struct Limits {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub json: bool,
}

/// Drives `layers` (the first is the primary: its JSON fields sit at the top level, the
/// others' under their names) until a signal, the target's exit, the duration or the count.
pub struct Runner<'a> {
    pub pid: u32,
    pub node: String,
    pub start: Instant,
    pub limits: Limits,
    pub layers: Vec<Box<dyn Layer + 'a>>,
    /// Cross-layer rules; present when more than one layer runs.
    pub correlator: Option<Correlator>,
    tty: bool,
    last: Instant,
    /// Events drained since the last report (they must reach an interval).
    pending: usize,
}

impl<'a> Runner<'a> {
    pub fn new(
        pid: u32,
        node: String,
        start: Instant,
        limits: Limits,
        layers: Vec<Box<dyn Layer + 'a>>,
        correlator: Option<Correlator>,
    ) -> Self {
        Runner {
            tty: !limits.json && std::io::stdout().is_terminal(),
            pid,
            node,
            start,
            limits,
            layers,
            correlator,
            last: start,
            pending: 0,
        }
    }

    fn poll(&mut self) -> usize {
        let n = self.layers.iter_mut().map(|l| l.poll()).sum();
        self.pending += n;
        n
    }

    /// Merges pieces into one envelope and prints it.
    fn emit(&mut self, kind: &str, pieces: Vec<Piece>, head: Map<String, Value>) -> Result<()> {
        let mut signals = Signals::default();
        let mut out = String::new();
        let mut obj = Map::new();
        obj.insert("type".into(), json!(kind));
        obj.insert("timestamp".into(), json!(view::rfc3339(SystemTime::now())));
        obj.insert("pid".into(), json!(self.pid));
        obj.insert("node".into(), json!(self.node));
        obj.extend(head);
        let mut raw = String::new();
        if self.tty && kind == "interval" {
            out.push_str("\x1b[H\x1b[2J");
        }
        for (i, (layer, p)) in self.layers.iter().zip(pieces).enumerate() {
            if i == 0 {
                obj.extend(p.json);
                for (k, v) in p.raw_json {
                    raw.push_str(&format!(",\"{k}\":{v}"));
                }
            } else {
                let mut sub = p.json;
                let mut sub_text = Value::Object(std::mem::take(&mut sub)).to_string();
                if !p.raw_json.is_empty() {
                    sub_text.pop();
                    for (k, v) in p.raw_json {
                        sub_text.push_str(&format!(",\"{k}\":{v}"));
                    }
                    sub_text.push('}');
                }
                raw.push_str(&format!(",\"{}\":{sub_text}", layer.name()));
            }
            out.push_str(&p.text);
            signals.anomalies.extend(p.signals.anomalies);
            signals.sys = signals.sys.or(p.signals.sys);
            signals.net = signals.net.or(p.signals.net);
        }
        if let Some(c) = self.correlator.as_mut().filter(|_| kind == "interval") {
            let found: Vec<Correlation> = c.observe(
                Instant::now(),
                &signals.anomalies,
                signals.sys.as_ref(),
                signals.net.as_ref(),
            );
            if !found.is_empty() {
                out.push_str("\n🔗 CORRELATED ALERTS\n");
                for f in &found {
                    out.push_str(&format!(
                        "  → [{}] {}: {}\n    next: `{}`\n",
                        &f.time[11..19],
                        f.summary,
                        f.evidence,
                        f.next
                    ));
                }
            }
            obj.insert("correlations".into(), json!(found));
        }
        if self.limits.json {
            let mut line = Value::Object(obj).to_string();
            line.pop();
            line.push_str(&raw);
            line.push_str("}\n");
            out = line;
        } else if !self.tty {
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .context("writing to stdout")?;
        stdout.flush().context("writing to stdout")
    }

    fn report(&mut self, now: Instant) -> Result<()> {
        let pieces = self
            .layers
            .iter_mut()
            .map(|l| l.interval(now))
            .collect::<Result<Vec<_>>>()?;
        let mut head = Map::new();
        head.insert(
            "uptime_secs".into(),
            json!(now.duration_since(self.start).as_secs()),
        );
        head.insert(
            "interval_secs".into(),
            json!(now.duration_since(self.last).as_secs_f64()),
        );
        self.last = now;
        self.pending = 0;
        self.emit("interval", pieces, head)
    }

    /// Runs to the end; prints the final partial interval and the summary.
    pub fn run(&mut self) -> Result<End> {
        let term = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&term))
                .context("installing signal handler")?;
        }
        // The line scripts (and the tests) wait for: every layer is attached.
        eprintln!(
            "ckb-probe: tracing {} of PID {}; Ctrl-C to stop",
            self.layers
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", "),
            self.pid
        );
        let (idle, busy) = (Duration::from_millis(100), Duration::from_millis(10));
        let interval = self.limits.interval;
        let mut next = self.start + interval;
        let mut reports = 0u64;
        let end = loop {
            if term.load(Ordering::Relaxed) {
                break End::Signal;
            }
            if !target::is_alive(self.pid) {
                break End::TargetExited;
            }
            let now = Instant::now();
            if self.limits.duration.is_some_and(|d| now >= self.start + d) {
                break End::Duration;
            }
            let drained = self.poll();
            if now >= next {
                self.report(now)?;
                reports += 1;
                next += interval;
                if next < now {
                    next = now + interval;
                }
                if self.limits.count.is_some_and(|c| reports >= c) {
                    break End::Count;
                }
            }
            // While events flow, come back sooner so ring buffers never fill up.
            let poll = if drained > 0 { busy } else { idle };
            std::thread::sleep(next.saturating_duration_since(Instant::now()).min(poll));
        };
        // Final read: everything recorded up to now, including a partial interval. Events
        // drained now must reach an interval, however short it is.
        self.poll();
        let now = Instant::now();
        if end != End::Count
            && (self.pending > 0 || now.duration_since(self.last) >= Duration::from_millis(50))
        {
            self.report(now)?;
        }
        let pieces = self
            .layers
            .iter_mut()
            .map(|l| l.summary(end))
            .collect::<Result<Vec<_>>>()?;
        let mut head = Map::new();
        head.insert(
            "duration_secs".into(),
            json!(now.duration_since(self.start).as_secs_f64()),
        );
        head.insert("end".into(), json!(end.name()));
        self.emit("summary", pieces, head)?;
        Ok(end)
    }
}

/// The message after a run the target's exit ended.
pub fn said_goodbye(end: End, pid: u32) {
    if end == End::TargetExited {
        eprintln!("ckb-probe: target process {pid} exited; probes detached, summary above.");
    }
}
