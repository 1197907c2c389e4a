//! What every tracing command shares: choosing the target, validating run-length flags, and
//! printing each report of the run (the library's session) as text or NDJSON.

use std::{io::IsTerminal, io::Write, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use ckb_probe::{
    error::InputError,
    model::{End, Kind, Lifecycle, LifecycleKind, Report},
    session::{self, Session},
    target::{self, Process},
    view::{ndjson, text},
};

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
    /// Also write every report as NDJSON to this new file (`ckb-probe replay FILE` shows it
    /// again later). An existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// When the target exits, wait for the node to come back (same executable, or `ckb run`
    /// with the same data directory) and trace it again.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: keep the learnt baselines across a restart instead of a new warm-up.
    #[arg(long, requires = "follow")]
    pub keep_baseline: bool,
}

impl RunArgs {
    /// Validated run length and output mode.
    pub fn limits(&self) -> Result<Limits> {
        at_least_one("count", self.count)?;
        Ok(Limits {
            interval: positive("interval", self.interval)?,
            run: session::Limits {
                duration: self.duration.map(|d| positive("duration", d)).transpose()?,
                count: self.count,
            },
        })
    }
}

/// Validated run-length flags.
pub struct Limits {
    pub interval: Duration,
    pub run: session::Limits,
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

/// The `--record` file: every report (the whole model, no cut of the syscall list) and every
/// lifecycle event of the run, as NDJSON.
pub struct Recording {
    file: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
}

impl Recording {
    /// A new file: refused when it exists (a recording is the user's data). Created before
    /// anything is attached, so a bad path leaves no probe behind.
    pub fn create(path: &std::path::Path) -> Result<Recording> {
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(InputError::Path {
                    path: path.to_path_buf(),
                    problem: "already exists".into(),
                    hint: "choose a new file name for --record (an existing recording is never overwritten)",
                }
                .into());
            }
            Err(e) => {
                return Err(InputError::Path {
                    path: path.to_path_buf(),
                    problem: format!("cannot be created ({e})"),
                    hint: "choose a writable location for --record",
                }
                .into());
            }
        };
        Ok(Recording {
            file: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
        })
    }

    fn write(&mut self, line: &str) -> Result<()> {
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .context("writing the --record file")
    }

    pub fn report(&mut self, r: &Report) -> Result<()> {
        let line = ndjson::line(r, ndjson::Options::default()).context("serializing a report")?;
        self.write(&line)
    }

    pub fn lifecycle(&mut self, e: &Lifecycle) -> Result<()> {
        let line = ndjson::lifecycle_line(e).context("serializing an event")?;
        self.write(&line)
    }

    /// Attaching failed and nothing was recorded: the empty file is not left behind.
    pub fn discard(self) {
        let path = self.path.clone();
        drop(self);
        let _ = std::fs::remove_file(path);
    }
}

/// Prints each report: a table (the screen redrawn on a terminal) or an NDJSON line; with
/// `--record`, also writes it to the recording.
pub struct Printer {
    pub json: bool,
    tty: bool,
    pub text: text::Options,
    pub ndjson: ndjson::Options,
    record: Option<Recording>,
}

impl Printer {
    pub fn new(json: bool, text: text::Options, ndjson: ndjson::Options) -> Self {
        Printer {
            json,
            tty: !json && std::io::stdout().is_terminal(),
            text,
            ndjson,
            record: None,
        }
    }

    /// Records every report to `path` too (created now, before any probe is attached).
    pub fn recording(mut self, path: Option<&std::path::Path>) -> Result<Self> {
        self.record = path.map(Recording::create).transpose()?;
        Ok(self)
    }

    /// Without clearing the screen between reports (a replay is read as a log).
    pub fn scrolling(mut self) -> Self {
        self.tty = false;
        self
    }

    fn write(&mut self, out: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .context("writing to stdout")?;
        stdout.flush().context("writing to stdout")
    }

    /// A followed target's exit or return.
    pub fn lifecycle(&mut self, e: &Lifecycle) -> Result<()> {
        if let Some(rec) = &mut self.record {
            rec.lifecycle(e)?;
        }
        if self.json {
            let line = ndjson::lifecycle_line(e).context("serializing an event")?;
            self.write(&(line + "\n"))
        } else {
            self.write(&text::lifecycle(e))
        }
    }

    pub fn print(&mut self, r: &Report) -> Result<()> {
        if let Some(rec) = &mut self.record {
            rec.report(r)?;
        }
        let out = if self.json {
            let mut line = ndjson::line(r, self.ndjson).context("serializing a report")?;
            line.push('\n');
            line
        } else {
            let mut out = String::new();
            if self.tty && r.header.kind == Kind::Interval {
                out.push_str("\x1b[H\x1b[2J");
            }
            out.push_str(&text::render(r, &self.text));
            if !self.tty {
                out.push('\n');
            }
            out
        };
        self.write(&out)
    }
}

impl session::Sink for Printer {
    fn report(&mut self, r: &Report) -> Result<()> {
        self.print(r)
    }

    fn lifecycle(&mut self, e: &Lifecycle) -> Result<()> {
        Printer::lifecycle(self, e)?;
        match e.kind {
            LifecycleKind::TargetExited => eprintln!(
                "ckb-probe: target process {} exited; waiting for the node to come back (--follow)",
                e.pid
            ),
            LifecycleKind::TargetAttached => eprintln!(
                "ckb-probe: attached to PID {} (was {}); tracing again",
                e.pid,
                e.previous_pid.unwrap_or_default()
            ),
        }
        Ok(())
    }
}

/// Attaches `opts.layers` to `process` and prints every report until the run ends.
pub fn run(
    process: &Process,
    opts: session::Options,
    limits: Limits,
    mut printer: Printer,
) -> Result<ExitCode> {
    let pid = process.pid;
    let session = match Session::start(process, opts) {
        Ok(s) => s,
        Err(e) => {
            if let Some(rec) = printer.record.take() {
                rec.discard();
            }
            return Err(e);
        }
    };
    for note in session.notes() {
        eprintln!("ckb-probe: {note}");
    }
    // The line scripts (and the tests) wait for: every layer is attached.
    eprintln!(
        "ckb-probe: tracing {} of PID {pid}; Ctrl-C to stop",
        session
            .layers()
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", "),
    );
    let (end, session) = session::drive_following(session, limits.run, &mut printer)?;
    let pid = session.pid();
    drop(session);
    said_goodbye(end, pid);
    Ok(ExitCode::SUCCESS)
}

/// The message after a run the target's exit ended.
pub fn said_goodbye(end: End, pid: u32) {
    if end == End::TargetExited {
        eprintln!("ckb-probe: target process {pid} exited; probes detached, summary above.");
    }
}
