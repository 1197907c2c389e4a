//! `ckb-probe syscall`: attach the syscall layer to a CKB node and report every interval.
//! The same layer runs beside the RocksDB layer with `ckb-probe rocksdb --with syscall`.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ckb_probe::{
    analysis::{
        syscall::{SysInterval, interval},
        syscall_names::SyscallTable,
    },
    collect::syscall::{SysCollector, SysSnapshot, thread_roles},
    error::InputError,
    node, privileges,
    probe::{Engine, syscall::attach},
    target::Process,
    view::{self, syscall::Header},
};
use ckb_probe_common::{config::Config, syscall::Role};
use serde_json::json;

use super::runner::{self, End, Layer, Piece, RunArgs, Runner, Signals};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
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
/// Rows of the syscall table when it runs beside the RocksDB layer.
const SECONDARY_TOP: usize = 5;

/// The syscall layer of one run.
pub struct SysLayer {
    /// Runs beside another layer: its summary says which layer it is.
    secondary: bool,
    top: Option<usize>,
    by_role: bool,
    role: Option<Role>,
    json: bool,
    pid: u32,
    node: String,
    table: Option<SyscallTable>,
    collector: SysCollector,
    start: Instant,
    first: SysSnapshot,
    prev: SysSnapshot,
    interval: Duration,
    /// The last thread census, kept for the summary after the target has exited.
    threads: BTreeMap<Role, usize>,
}

impl SysLayer {
    /// Attaches the syscall tracepoints through `engine` for `process`.
    fn open(engine: &mut Engine, process: &Process, json: bool) -> Result<Self> {
        let collector = SysCollector::new(engine)?;
        let attached = attach(engine).context("attaching the syscall tracepoints")?;
        let first = collector.snapshot()?;
        eprintln!(
            "ckb-probe: attached to PID {} ({}): raw tracepoints sys_enter/sys_exit, syscall names for {}{}",
            process.pid,
            process.command(),
            attached.arch.unwrap_or("no architecture (numbers only)"),
            if attached.futex_waits {
                ""
            } else {
                "; futex waits cannot be told from wakes here"
            }
        );
        Ok(SysLayer {
            secondary: false,
            top: None,
            by_role: false,
            role: None,
            json,
            pid: process.pid,
            node: String::new(),
            table: SyscallTable::host(),
            collector,
            start: first.at,
            prev: first.clone(),
            first,
            interval: Duration::from_secs(1),
            threads: BTreeMap::new(),
        })
    }

    fn interval_between(&mut self, from: &SysSnapshot, to: &SysSnapshot) -> SysInterval {
        let now = thread_roles(self.pid);
        if !now.is_empty() {
            self.threads = now;
        }
        interval(from, to, self.table.as_ref(), &self.threads)
    }

    fn text(&self, header: &Header, iv: &SysInterval) -> String {
        let top = self.top.unwrap_or(DEFAULT_TOP);
        let mut out = view::syscall::table(header, iv, top, self.role);
        if self.by_role {
            out.push_str(&view::syscall::by_role(iv, top));
        } else if self.role.is_none() {
            out.push_str(&view::syscall::io_by_role(iv, top));
        }
        out.push_str(&view::syscall::status(iv));
        out
    }
}

/// The syscall layer as a secondary layer of another command (`rocksdb --with syscall`).
pub fn secondary(
    engine: &mut Engine,
    process: &Process,
    json: bool,
    node: &str,
    (start, interval): (Instant, Duration),
) -> Result<SysLayer> {
    let mut layer = SysLayer::open(engine, process, json)?;
    layer.node = node.to_string();
    layer.start = start;
    layer.interval = interval;
    layer.top = Some(SECONDARY_TOP);
    layer.secondary = true;
    Ok(layer)
}

impl Layer for SysLayer {
    fn name(&self) -> &'static str {
        "syscall"
    }

    fn interval(&mut self, now: Instant) -> Result<Piece> {
        let cur = self.collector.snapshot()?;
        let prev = std::mem::replace(&mut self.prev, SysSnapshot::empty(cur.at));
        let iv = self.interval_between(&prev, &cur);
        let mut piece = Piece::default();
        if self.json {
            piece.json = view::syscall::json_fields(&iv, self.top);
        } else {
            let header = Header {
                pid: self.pid,
                uptime: now.duration_since(self.start),
                interval: self.interval,
                node: &self.node,
            };
            piece.text = self.text(&header, &iv);
        }
        self.prev = cur;
        piece.signals = Signals {
            sys: Some(iv),
            ..Signals::default()
        };
        Ok(piece)
    }

    fn summary(&mut self, _end: End) -> Result<Piece> {
        let cur = self.collector.snapshot()?;
        let first = std::mem::replace(&mut self.first, SysSnapshot::empty(cur.at));
        let total = self.interval_between(&first, &cur);
        let mut piece = Piece::default();
        if self.json {
            piece.json = view::syscall::json_fields(&total, self.top);
            piece
                .json
                .insert("arch".into(), json!(self.table.map(|t| t.arch)));
        } else {
            let d = Duration::from_secs_f64(total.secs);
            let out = &mut piece.text;
            out.push_str(&format!(
                "\n{}ummary over {} (averages and percentiles over the whole run):\n",
                if self.secondary { "Syscall s" } else { "S" },
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
        Ok(piece)
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let limits = args.run.limits()?;
    let interval_d = limits.interval;
    runner::at_least_one("top", args.top.map(|t| t as u64))?;
    let role = match &args.role {
        None => None,
        Some(name) => Some(Role::from_name(name).ok_or_else(|| {
            InputError::Other(format!(
                "--role {name}: unknown role; use one of {}",
                Role::ALL.map(Role::name).join(", ")
            ))
        })?),
    };

    let process = runner::target(args.run.pid)?;
    let pid = process.pid;
    let mut engine = Engine::load(Config {
        tgid: pid,
        flags: 0,
        slow_threshold_ns: u64::MAX,
    })?;
    let mut layer = SysLayer::open(&mut engine, &process, args.run.json)?;
    layer.node = node::describe(&process);
    if let Err(e) = privileges::drop_all() {
        tracing::warn!("could not drop capabilities: {e}");
    }
    layer.top = args.top;
    layer.by_role = args.by_role;
    layer.role = role;
    layer.interval = interval_d;
    let (start, node) = (layer.start, layer.node.clone());
    let end = Runner::new(pid, node, start, limits, vec![Box::new(layer)], None).run()?;
    drop(engine);
    runner::said_goodbye(end, pid);
    Ok(ExitCode::SUCCESS)
}
