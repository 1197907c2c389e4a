//! A run: the target, the loaded engine, the layers asked for, their collectors, slow logs,
//! baselines, detectors and the correlator, the clock and the poll cadence. It has four plain
//! calls: [`Session::start`], [`Session::poll`] (drain events), [`Session::tick`] (the interval
//! ending now, as a [`Report`]) and [`Session::finish`] (the run's summary, the same kind of
//! value). [`drive`] is the loop the line-oriented commands use; the TUI and the exporter call
//! the same four themselves.

pub mod net;
pub mod rocksdb;
pub mod syscall;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use ckb_probe_common::config::Config;

use self::{
    net::{NetLayer, NetOptions},
    rocksdb::{RocksLayer, RocksOptions},
    syscall::SysLayer,
};
use crate::{
    analysis::correlate::Correlator,
    model::{Chain, End, Header, Kind, LayerName, Lifecycle, LifecycleKind, Report, Unavailable},
    node, privileges,
    probe::Engine,
    target::{self, Process},
    view,
};

/// What a run traces and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The layers, primary first.
    pub layers: Vec<LayerName>,
    /// A layer that cannot attach stops the run (false: it is reported in
    /// [`Report::unavailable`] and the others run).
    pub require_all: bool,
    /// The report interval.
    pub interval: Duration,
    /// Baseline learning before anomaly, churn and correlation alerts.
    pub warmup: Duration,
    pub rocksdb: RocksOptions,
    pub net: NetOptions,
    /// Ask the node's RPC for the tip and sync state (every few seconds).
    pub chain: bool,
    /// When the target exits, wait for its successor and attach to it ([`drive`]). Keeps the
    /// privileges attaching needs for the whole run.
    pub follow: bool,
    /// With `follow`: the successor inherits the learnt baselines instead of a new warm-up.
    pub keep_baseline: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            layers: vec![LayerName::Rocksdb],
            require_all: true,
            interval: Duration::from_secs(1),
            warmup: Duration::from_secs(300),
            rocksdb: RocksOptions::default(),
            net: NetOptions::default(),
            chain: false,
            follow: false,
            keep_baseline: false,
        }
    }
}

/// The node's RPC for the header's chain state.
struct ChainRpc {
    addr: SocketAddr,
    next: Instant,
    last: Option<Chain>,
}

impl ChainRpc {
    const REFRESH: Duration = Duration::from_secs(5);

    fn get(&mut self, now: Instant) -> Option<Chain> {
        if now >= self.next {
            self.next = now + Self::REFRESH;
            self.last = chain(self.addr);
        }
        self.last.clone()
    }
}

fn hex_u64(v: &serde_json::Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// Tip, best known header and peer count from the node's RPC.
fn chain(addr: SocketAddr) -> Option<Chain> {
    let tip = node::call(addr, "get_tip_block_number", serde_json::json!([]))
        .as_ref()
        .and_then(hex_u64);
    tip?;
    let best = node::call(addr, "sync_state", serde_json::json!([]))
        .and_then(|v| hex_u64(v.get("best_known_block_number")?));
    let peers = node::call(addr, "local_node_info", serde_json::json!([]))
        .and_then(|v| hex_u64(v.get("connections")?));
    Some(Chain {
        tip_block_number: tip,
        best_known_block_number: best,
        peers,
    })
}

/// A `--symbols-from` FILE that cannot serve (another build, not an ELF file, no such file) is
/// the user's mistake to fix, not a layer this node lacks: it ends even a run that goes on
/// without the layers that cannot attach.
fn symbols_from_refused(e: &anyhow::Error, opts: &Options) -> bool {
    let Some(from) = &opts.rocksdb.symbols_from else {
        return false;
    };
    e.chain()
        .filter_map(|c| c.downcast_ref::<crate::symbols::SymbolsError>())
        .any(|s| s.is_about(from))
}

pub struct Session {
    pid: u32,
    process: Process,
    node: String,
    /// The kernel's release, read once: every report names it.
    kernel: String,
    opts: Options,
    start: Instant,
    last: Instant,
    /// Events drained since the last report (they must reach an interval).
    pending: usize,
    layers: Vec<LayerName>,
    rocksdb: Option<RocksLayer>,
    syscall: Option<SysLayer>,
    net: Option<NetLayer>,
    correlator: Option<Correlator>,
    chain: Option<ChainRpc>,
    unavailable: Vec<Unavailable>,
    notes: Vec<String>,
    /// Last: the layers' maps must go before the programs and links they belong to.
    engine: Engine,
}

impl Session {
    /// Loads the kernel programs and attaches the layers to `process`, then drops every
    /// privilege the run no longer needs.
    pub fn start(process: &Process, opts: Options) -> Result<Session> {
        let pid = process.pid;
        let config = if opts.layers.contains(&LayerName::Rocksdb) {
            rocksdb::config(pid, &opts.rocksdb)
        } else {
            Config {
                tgid: pid,
                flags: 0,
                slow_threshold_ns: u64::MAX,
            }
        };
        let mut engine = Engine::load(config)?;
        let mut notes = Vec::new();
        if crate::check::in_foreign_pid_namespace() {
            notes.push(format!(
                "warning: ckb-probe runs in a container's PID namespace: PID {pid} is not the PID the \
                 kernel filters on, so nothing may be counted; run it in the host PID namespace \
                 (`ckb-probe check` says how)"
            ));
        }
        let mut unavailable = Vec::new();
        let (mut rocks, mut sys, mut net) = (None, None, None);
        let mut layers = Vec::new();
        for &layer in &opts.layers {
            let opened = match layer {
                LayerName::Rocksdb => RocksLayer::open(
                    &mut engine,
                    process,
                    opts.rocksdb.clone(),
                    opts.warmup,
                    &mut notes,
                )
                .map(|l| rocks = Some(l)),
                LayerName::Syscall => {
                    SysLayer::open(&mut engine, process, &mut notes).map(|l| sys = Some(l))
                }
                LayerName::Net => {
                    NetLayer::open(&mut engine, process, &opts.net, opts.warmup, &mut notes)
                        .map(|l| net = Some(l))
                }
            };
            match opened {
                Ok(()) => layers.push(layer),
                Err(e) if opts.require_all || symbols_from_refused(&e, &opts) => return Err(e),
                Err(e) => unavailable.push(Unavailable {
                    layer,
                    reason: format!("{e:#}"),
                }),
            }
        }
        if layers.is_empty() {
            let why: Vec<String> = unavailable
                .iter()
                .map(|u| format!("{}: {}", u.layer.name(), u.reason))
                .collect();
            return Err(anyhow::anyhow!(
                "no layer could attach to PID {pid} ({})",
                why.join("; ")
            ));
        }
        // The run's clock starts when the primary layer took its first snapshot.
        let start = match layers[0] {
            LayerName::Rocksdb => rocks.as_ref().map(RocksLayer::start),
            LayerName::Syscall => sys.as_ref().map(SysLayer::start),
            LayerName::Net => net.as_ref().map(NetLayer::start),
        }
        .unwrap_or_else(Instant::now);
        let node_desc = node::describe(process);
        let chain = if opts.chain {
            node::rpc_addr(process).map(|addr| ChainRpc {
                addr,
                next: start,
                last: None,
            })
        } else {
            None
        };
        // Everything that needs privileges (loading, attaching, reading the target's files) is
        // done, except the network layer's re-reading of the target's sockets, and attaching to
        // a successor when following.
        let keep: &[privileges::Capability] = if net.is_some() {
            &[privileges::CAP_SYS_PTRACE]
        } else {
            &[]
        };
        if opts.follow {
            tracing::info!("--follow: keeping the capabilities attaching to a successor needs");
        } else if let Err(e) = privileges::drop_all_but(keep) {
            tracing::warn!("could not drop capabilities: {e}");
        }
        let session = Session {
            pid,
            process: process.clone(),
            node: node_desc,
            kernel: crate::check::kernel_release(),
            correlator: (layers.len() > 1).then(|| Correlator::new(start, opts.warmup)),
            opts,
            start,
            last: start,
            pending: 0,
            layers,
            rocksdb: rocks,
            syscall: sys,
            net,
            chain,
            unavailable,
            notes,
            engine,
        };
        release_freed_heap();
        Ok(session)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn start_time(&self) -> Instant {
        self.start
    }

    pub fn interval(&self) -> Duration {
        self.opts.interval
    }

    /// The layers that run, primary first.
    pub fn layers(&self) -> &[LayerName] {
        &self.layers
    }

    /// Layers asked for that could not attach.
    pub fn unavailable(&self) -> &[Unavailable] {
        &self.unavailable
    }

    /// What attaching found worth telling the operator (one line each).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The engine, for probe-level questions (e.g. program ids).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Moves pending events out of the kernel; returns how many (more means poll sooner).
    pub fn poll(&mut self) -> usize {
        let mut n = 0;
        if let Some(l) = &mut self.rocksdb {
            n += l.poll();
        }
        if let Some(l) = &mut self.net {
            n += l.poll();
        }
        self.pending += n;
        n
    }

    /// Events drained since the last report.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// When the last report was made.
    pub fn last_report(&self) -> Instant {
        self.last
    }

    fn header(&mut self, kind: Kind, now: Instant) -> Header {
        let chain = self.chain.as_mut().and_then(|c| c.get(now));
        Header {
            kind,
            timestamp: view::rfc3339(SystemTime::now()),
            pid: self.pid,
            node: self.node.clone(),
            layers: self.layers.clone(),
            uptime_secs: now.duration_since(self.start).as_secs(),
            interval_secs: now.duration_since(self.last).as_secs_f64(),
            sampling_secs: self.opts.interval.as_secs_f64(),
            duration_secs: 0.0,
            end: None,
            chain,
            kernel: self.kernel.clone(),
        }
    }

    /// The interval ending `now`.
    pub fn tick(&mut self, now: Instant) -> Result<Report> {
        let header = self.header(Kind::Interval, now);
        let rocksdb = self.rocksdb.as_mut().map(|l| l.tick(now)).transpose()?;
        let syscall = self.syscall.as_mut().map(|l| l.tick()).transpose()?;
        let net = self.net.as_mut().map(|l| l.tick(now)).transpose()?;
        let (net, disconnects) = match net {
            Some((s, d)) => (Some(s), Some(d)),
            None => (None, None),
        };
        let correlations = self.correlator.as_mut().map(|c| {
            c.observe(
                now,
                rocksdb.as_ref().map_or(&[][..], |r| &r.anomalies),
                syscall.as_ref().map(|s| &s.stats),
                disconnects.as_ref(),
            )
        });
        self.last = now;
        self.pending = 0;
        Ok(Report {
            header,
            rocksdb,
            syscall,
            net,
            correlations,
            unavailable: self.unavailable.clone(),
        })
    }

    /// The whole run, after the final interval.
    pub fn finish(&mut self, end: End) -> Result<Report> {
        let now = Instant::now();
        let mut header = self.header(Kind::Summary, now);
        header.duration_secs = now.duration_since(self.start).as_secs_f64();
        header.end = Some(end);
        Ok(Report {
            header,
            rocksdb: self.rocksdb.as_mut().map(|l| l.summary()).transpose()?,
            syscall: self.syscall.as_mut().map(|l| l.summary()).transpose()?,
            net: self.net.as_mut().map(|l| l.summary()).transpose()?,
            correlations: None,
            unavailable: self.unavailable.clone(),
        })
    }

    /// Whether the target still runs.
    pub fn target_alive(&self) -> bool {
        target::is_alive(self.pid)
    }

    /// The process being traced.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Whether the run follows its target across restarts (`Options::follow`).
    pub fn follows(&self) -> bool {
        self.opts.follow
    }

    /// Once this session's target has exited: its successor (see [`target::successor`])
    /// traced by a new session with these options (new offsets for a new binary, counters from
    /// zero, a new warm-up unless `keep_baseline`), or `None` while there is none yet.
    pub fn follow_successor(&mut self) -> Option<Result<Session>> {
        let next = target::successor(&self.process)?;
        let old_pid = self.pid;
        Some(
            Session::start(&next, self.opts.clone())
                .with_context(|| {
                    format!("attaching to PID {}, the successor of {old_pid}", next.pid)
                })
                .map(|mut fresh| {
                    if self.opts.keep_baseline {
                        fresh.adopt_baselines(self);
                    }
                    fresh
                }),
        )
    }

    /// Takes over `old`'s learnt baselines: latency anomalies, churn and correlation rules
    /// keep their state across a restart of the node (`--keep-baseline`).
    pub fn adopt_baselines(&mut self, old: &mut Session) {
        if let (Some(new), Some(old)) = (&mut self.rocksdb, &mut old.rocksdb) {
            new.adopt_baselines(old);
        }
        if let (Some(new), Some(old)) = (&mut self.net, &mut old.net) {
            new.adopt_baselines(old);
        }
        if self.correlator.is_some() && old.correlator.is_some() {
            std::mem::swap(&mut self.correlator, &mut old.correlator);
        }
    }
}

/// Gives the heap that attaching freed back to the system. Loading parses the kernel's BTF
/// (about 17 MB at its peak), attaching reads the target's symbol tables; glibc keeps what they
/// freed (freeing a block that large raises its trim threshold to twice its size), which was
/// 12 MB of ckb-probe's RSS for the rest of the run.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only works on the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long a line-oriented run goes on.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

/// A flag raised by SIGINT and SIGTERM.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term)).context("installing signal handler")?;
    }
    Ok(term)
}

/// Where a run's output goes.
pub trait Sink {
    fn report(&mut self, r: &Report) -> Result<()>;
    /// A followed target exited or was attached again.
    fn lifecycle(&mut self, _e: &Lifecycle) -> Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&Report) -> Result<()>> Sink for F {
    fn report(&mut self, r: &Report) -> Result<()> {
        self(r)
    }
}

/// The state of the report loop across the processes of a followed run.
struct Pace {
    term: Arc<AtomicBool>,
    deadline: Option<Instant>,
    count: Option<u64>,
    reports: u64,
}

/// Polls and reports until something ends this session's part of the run.
fn run_session(session: &mut Session, pace: &mut Pace, sink: &mut dyn Sink) -> Result<End> {
    let (idle, busy) = (Duration::from_millis(100), Duration::from_millis(10));
    let interval = session.opts.interval;
    let mut next = session.last + interval;
    loop {
        if pace.term.load(Ordering::Relaxed) {
            return Ok(End::Signal);
        }
        if !session.target_alive() {
            return Ok(End::TargetExited);
        }
        let now = Instant::now();
        if pace.deadline.is_some_and(|d| now >= d) {
            return Ok(End::Duration);
        }
        let drained = session.poll();
        if now >= next {
            sink.report(&session.tick(now)?)?;
            pace.reports += 1;
            next += interval;
            if next < now {
                next = now + interval;
            }
            if pace.count.is_some_and(|c| pace.reports >= c) {
                return Ok(End::Count);
            }
        }
        // While events flow, come back sooner so ring buffers never fill up.
        let poll = if drained > 0 { busy } else { idle };
        std::thread::sleep(next.saturating_duration_since(Instant::now()).min(poll));
    }
}

/// Final read: everything recorded up to now, including a partial interval. Events drained now
/// must reach an interval, however short it is.
pub fn last_interval(session: &mut Session, end: End, sink: &mut dyn Sink) -> Result<()> {
    session.poll();
    let now = Instant::now();
    if end != End::Count
        && (session.pending > 0 || now.duration_since(session.last) >= Duration::from_millis(50))
    {
        sink.report(&session.tick(now)?)?;
    }
    Ok(())
}

/// Waits for the successor of `session`'s target and attaches to it; `None` when the run must
/// end first (a signal or the deadline).
fn wait_for_successor(session: &mut Session, pace: &Pace) -> Option<Result<Session>> {
    loop {
        if pace.term.load(Ordering::Relaxed) {
            return None;
        }
        if pace.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if let Some(fresh) = session.follow_successor() {
            return Some(fresh);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `session` to the end (a signal, the target's exit, the duration or the count), handing
/// every report to `sink`: each interval, a final partial interval, then the summary.
pub fn drive(
    session: &mut Session,
    limits: Limits,
    sink: &mut dyn FnMut(&Report) -> Result<()>,
) -> Result<End> {
    let mut pace = Pace {
        term: stop_flag()?,
        deadline: limits.duration.map(|d| session.start + d),
        count: limits.count,
        reports: 0,
    };
    let mut sink = sink;
    let end = run_session(session, &mut pace, &mut sink)?;
    last_interval(session, end, &mut sink)?;
    sink(&session.finish(end)?)?;
    Ok(end)
}

/// [`drive`] for a run that may follow its target across restarts (`Options::follow`): when
/// the target exits, its last interval is reported, then a `target_exited` event; the run waits
/// for the successor, attaches to it (new offsets for a new binary, counters from zero, a new
/// warm-up unless `keep_baseline`) and reports `target_attached`. The summary covers the process
/// traced last. Returns how the run ended and the session it ended with.
pub fn drive_following(
    mut session: Session,
    limits: Limits,
    sink: &mut dyn Sink,
) -> Result<(End, Session)> {
    let mut pace = Pace {
        term: stop_flag()?,
        deadline: limits.duration.map(|d| session.start + d),
        count: limits.count,
        reports: 0,
    };
    let mut restarts = 0u64;
    loop {
        let end = run_session(&mut session, &mut pace, sink)?;
        last_interval(&mut session, end, sink)?;
        if end != End::TargetExited || !session.opts.follow {
            sink.report(&session.finish(end)?)?;
            return Ok((end, session));
        }
        let old_pid = session.pid;
        sink.lifecycle(&Lifecycle {
            kind: LifecycleKind::TargetExited,
            timestamp: view::rfc3339(SystemTime::now()),
            pid: old_pid,
            previous_pid: None,
            node: None,
            restarts,
        })?;
        let Some(fresh) = wait_for_successor(&mut session, &pace) else {
            let end = if pace.term.load(Ordering::Relaxed) {
                End::Signal
            } else {
                End::Duration
            };
            sink.report(&session.finish(end)?)?;
            return Ok((end, session));
        };
        let fresh = fresh?;
        // The old process's probes go before the new ones report.
        drop(std::mem::replace(&mut session, fresh));
        restarts += 1;
        sink.lifecycle(&Lifecycle {
            kind: LifecycleKind::TargetAttached,
            timestamp: view::rfc3339(SystemTime::now()),
            pid: session.pid,
            previous_pid: Some(old_pid),
            node: Some(session.node.clone()),
            restarts,
        })?;
    }
}
