//! `ckb-probe syscall`: attach the syscall layer to a CKB node and report every interval.

use std::{
    collections::BTreeMap,
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
        syscall::{SysInterval, interval},
        syscall_names::SyscallTable,
    },
    collect::syscall::{SysCollector, SysSnapshot, thread_roles},
    error::InputError,
    node,
    probe::{Engine, syscall::attach},
    target,
    view::{self, syscall::Header},
};
use ckb_probe_common::{config::Config, syscall::Role};
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
    /// NDJSON: one object per interval, then a summary object. Lists every system call
    /// unless --top is given.
    #[arg(long)]
    pub json: bool,
    /// Rows in the tables (default 15); with --json, cuts the `syscalls` list too.
    #[arg(long)]
    pub top: Option<usize>,
    /// Break every role's system calls down, not only file I/O.
    #[arg(long, conflicts_with = "role")]
    pub by_role: bool,
    /// Show only the calls of one thread role: compaction, flush, verify_blocks,
    /// chain_service, tokio, rayon, preload, block_download, header_map, logger, main, other.
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
}

const DEFAULT_TOP: usize = 15;

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

struct Session {
    args: Args,
    role: Option<Role>,
    pid: u32,
    node: String,
    table: Option<SyscallTable>,
    collector: SysCollector,
    start: Instant,
    first: SysSnapshot,
    prev: SysSnapshot,
    interval: Duration,
    tty: bool,
    /// The last thread census, kept for the summary after the target has exited.
    threads: BTreeMap<Role, usize>,
}

impl Session {
    fn interval(&mut self, from: &SysSnapshot, to: &SysSnapshot) -> SysInterval {
        let now = thread_roles(self.pid);
        if !now.is_empty() {
            self.threads = now;
        }
        interval(from, to, self.table.as_ref(), &self.threads)
    }

    fn text(&self, header: &Header, iv: &SysInterval) -> String {
        let top = self.args.top.unwrap_or(DEFAULT_TOP);
        let mut out = view::syscall::table(header, iv, top, self.role);
        if self.args.by_role {
            out.push_str(&view::syscall::by_role(iv, top));
        } else if self.role.is_none() {
            out.push_str(&view::syscall::io_by_role(iv, top));
        }
        out.push_str(&view::syscall::status(iv));
        out
    }

    fn report(&mut self, cur: SysSnapshot) -> Result<()> {
        let prev = std::mem::replace(&mut self.prev, SysSnapshot::empty(cur.at));
        let iv = self.interval(&prev, &cur);
        let uptime = cur.at.duration_since(self.start);
        let mut out = String::new();
        if self.args.json {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), json!("interval"));
            m.insert("timestamp".into(), json!(view::rfc3339(SystemTime::now())));
            m.insert("pid".into(), json!(self.pid));
            m.insert("uptime_secs".into(), json!(uptime.as_secs()));
            m.insert("node".into(), json!(self.node));
            m.extend(view::syscall::json_fields(&iv, self.args.top));
            out.push_str(&Value::Object(m).to_string());
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
            out.push_str(&self.text(&header, &iv));
            if !self.tty {
                out.push('\n');
            }
        }
        self.prev = cur;
        write_out(&out)
    }

    fn summary(&mut self, cur: &SysSnapshot, end: End) -> Result<()> {
        let first = std::mem::replace(&mut self.first, SysSnapshot::empty(cur.at));
        let total = self.interval(&first, cur);
        let mut out = String::new();
        if self.args.json {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), json!("summary"));
            m.insert("timestamp".into(), json!(view::rfc3339(SystemTime::now())));
            m.insert("pid".into(), json!(self.pid));
            m.insert("duration_secs".into(), json!(total.secs));
            m.insert("end".into(), json!(end.name()));
            m.insert("node".into(), json!(self.node));
            m.insert("arch".into(), json!(self.table.map(|t| t.arch)));
            m.extend(view::syscall::json_fields(&total, self.args.top));
            out.push_str(&Value::Object(m).to_string());
            out.push('\n');
        } else {
            let d = Duration::from_secs_f64(total.secs);
            out.push_str(&format!(
                "\nSummary over {} (averages and percentiles over the whole run):\n",
                view::hms(d)
            ));
            let header = Header {
                pid: self.pid,
                uptime: d,
                interval: d,
                node: &self.node,
            };
            out.push_str(&self.text(&header, &total));
            let calls: u64 = total.syscalls.iter().map(|r| r.count).sum();
            out.push_str(&format!(
                "  System calls: {} ({} distinct)   Unpaired exits: {}\n",
                view::thousands(calls),
                total.syscalls.len(),
                total.unpaired
            ));
        }
        write_out(&out)
    }
}

fn write_out(s: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(s.as_bytes())
        .context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}

pub fn run(args: Args) -> Result<ExitCode> {
    let interval_d = positive("interval", args.interval)?;
    let duration = args.duration.map(|d| positive("duration", d)).transpose()?;
    if args.count == Some(0) {
        return Err(InputError::Other("--count must be at least 1".into()).into());
    }
    if args.top == Some(0) {
        return Err(InputError::Other("--top must be at least 1".into()).into());
    }
    let role = match &args.role {
        None => None,
        Some(name) => Some(Role::from_name(name).ok_or_else(|| {
            InputError::Other(format!(
                "--role {name}: unknown role; use one of {}",
                Role::ALL.map(Role::name).join(", ")
            ))
        })?),
    };

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

    let mut engine = Engine::load(Config {
        tgid: pid,
        flags: 0,
        slow_threshold_ns: u64::MAX,
    })?;
    let collector = SysCollector::new(&mut engine)?;
    let attached = attach(&mut engine).context("attaching the syscall tracepoints")?;
    let first = collector.snapshot()?;
    let start = first.at;
    eprintln!(
        "ckb-probe: attached to PID {pid} ({}): raw tracepoints sys_enter/sys_exit, syscall names for {}{}",
        process.command(),
        attached.arch.unwrap_or("no architecture (numbers only)"),
        if attached.futex_waits {
            ""
        } else {
            "; futex waits cannot be told from wakes here"
        }
    );
    let node = match node::describe(&process, None) {
        d if d == "unknown" => process.comm.clone(),
        d => d,
    };

    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term)).context("installing signal handler")?;
    }

    let mut s = Session {
        tty: !args.json && std::io::stdout().is_terminal(),
        args,
        role,
        pid,
        node,
        table: SyscallTable::host(),
        collector,
        start,
        prev: first.clone(),
        first,
        interval: interval_d,
        threads: BTreeMap::new(),
    };

    let tick = Duration::from_millis(100);
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
        if now >= next {
            let cur = s.collector.snapshot()?;
            s.report(cur)?;
            reports += 1;
            next += interval_d;
            if next < now {
                next = now + interval_d;
            }
            if s.args.count.is_some_and(|c| reports >= c) {
                break End::Count;
            }
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()).min(tick));
    };

    // Final read: everything the kernel recorded up to now, including a partial interval.
    let cur = s.collector.snapshot()?;
    if end != End::Count && cur.at.duration_since(s.prev.at) >= Duration::from_millis(50) {
        s.report(cur.clone())?;
    }
    s.summary(&cur, end)?;
    drop(engine);
    if end == End::TargetExited {
        eprintln!("ckb-probe: target process {pid} exited; probes detached, summary above.");
    }
    Ok(ExitCode::SUCCESS)
}
