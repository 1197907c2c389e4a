//! ckb-probe-testbed: drives RocksDB through the same C API functions the CKB node calls, in
//! CKB's shape (an OptimisticTransactionDB with 19 column families), and reports the exact number
//! of calls, hits, misses, errors, bytes and latencies per function: the ground truth that
//! ckb-probe's uprobe counts are checked against.
//!
//! Two binaries share this library and differ only in how RocksDB is linked (see `build.rs`):
//! `ckb-probe-testbed` (static, like CKB) and `ckb-probe-testbed-dylib` (`librocksdb.so`).
#![deny(unsafe_code)]

pub mod cli;
#[allow(unsafe_code)]
pub mod ffi;
pub mod truth;
pub mod workload;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cli::Args;
use ffi::{Db, ReadOptions, TxnOptions, WriteOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use truth::{CAT_NAMES, GroundTruth, Live, NUM_CATS, StormTruth, ThreadStats};
use workload::Shared;

/// How RocksDB is linked into the running binary (reported in the ground truth).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    Static,
    Dylib,
}

impl LinkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Static => "static",
            LinkMode::Dylib => "dylib",
        }
    }
}

/// Entry point of both binaries.
pub fn run(mode: LinkMode) -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        // Prints usage or the error; exit status 0 for --help/--version, 2 for bad flags.
        Err(e) => e.exit(),
    };
    if let Err(msg) = args.storms() {
        // Same status as clap's own rejections: a bad combination of flags.
        eprintln!("ckb-probe-testbed: error: {msg}");
        return ExitCode::from(2);
    }
    match run_with(&args, mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckb-probe-testbed: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A DB directory that is removed on drop unless the user chose it with `--db`.
struct DbDir {
    path: PathBuf,
    remove: bool,
}

impl DbDir {
    fn new(chosen: Option<&Path>) -> Result<DbDir> {
        let (path, remove) = match chosen {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let name = format!("ckb-probe-testbed-{}-{nanos:09}", std::process::id());
                (std::env::temp_dir().join(name), true)
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating DB directory {}", path.display()))?;
        Ok(DbDir { path, remove })
    }
}

impl Drop for DbDir {
    fn drop(&mut self) {
        if self.remove
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!(
                "ckb-probe-testbed: warning: could not remove {}: {e}",
                self.path.display()
            );
        }
    }
}

fn run_with(args: &Args, mode: LinkMode) -> Result<()> {
    ffi::install_stop_handlers().context("installing SIGTERM/SIGINT handlers")?;
    // Declared before `db` so that it is dropped (and the directory removed) after the DB closes.
    let dir = DbDir::new(args.db.as_deref())?;
    let db = Db::open(&dir.path, &truth::CF_NAMES)
        .with_context(|| format!("opening OptimisticTransactionDB at {}", dir.path.display()))?;
    let key_size = usize::try_from(args.key_size)?;
    let value_size = usize::try_from(args.value_size)?;
    workload::preload(&db, args.threads, key_size, value_size).context("preloading keys")?;
    // Created before READY so that the measured phase contains only the workload's own calls.
    let (ro, wo_normal, wo_storm, txn_opts) = (
        ReadOptions::new(),
        WriteOptions::new(args.sync),
        WriteOptions::new(true),
        TxnOptions::new(),
    );

    let pid = std::process::id();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY pid={pid}")
            .and_then(|_| out.flush())
            .context("writing READY")?;
    }
    if let Some(start_file) = &args.start_file {
        while !start_file.exists() && !ffi::STOP_REQUESTED.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    let start = Instant::now();
    let sh = Shared {
        db: &db,
        ro,
        wo_normal,
        wo_storm,
        txn_opts,
        key_size,
        value_size,
        hit_ratio: args.hit_ratio,
        max_iterations: args.max_iterations,
        interval: (args.rate > 0.0).then(|| f64::from(args.threads) / args.rate),
        storm: args.storms().ok().flatten(),
        start,
        deadline: start + Duration::from_secs_f64(args.duration),
        skip: truth::Func::ALL
            .iter()
            .copied()
            .filter(|f| args.skip.iter().any(|s| s == f.name()))
            .collect(),
    };
    let (stats, duration) = measured_phase(&sh, args);
    // The measured phase is over; what follows only releases options and closes the DB.
    drop(sh);

    let merged = truth::merge(stats);
    let storm = args.storm_window().map(|(from, to)| StormTruth {
        after_secs: from,
        secs: to - from,
        every_secs: args.storm_every,
        normal: truth::phase_means(&merged.phase[0]),
        storm: truth::phase_means(&merged.phase[1]),
    });
    if args.verbose {
        report_phases(&merged.phase);
    }
    let gt = GroundTruth {
        pid,
        link_mode: mode.as_str(),
        duration_secs: duration.as_secs_f64(),
        worker_cpu_secs: merged.cpu_ns as f64 / 1e9,
        threads: args.threads,
        iterations: merged.iterations,
        functions: merged.functions,
        latency_ns: merged.latency_ns,
        storm,
    };
    let json = serde_json::to_string(&gt).context("serializing the ground truth")?;
    drop(db);
    drop(dir);
    write_output(args.output.as_deref(), &json)
}

/// Runs workers (plus the storm's compactor and the `--verbose` monitor) and returns every
/// thread's stats and the measured duration.
fn measured_phase(sh: &Shared<'_>, args: &Args) -> (Vec<ThreadStats>, Duration) {
    let done = AtomicBool::new(false);
    let worker_stats: Vec<ThreadStats> = (0..args.threads)
        .map(|_| ThreadStats::with_latencies(!args.no_latency_samples))
        .collect();
    let compactor_stats = ThreadStats::with_latencies(!args.no_latency_samples);
    let mut lives: Vec<Arc<Live>> = worker_stats.iter().map(|s| Arc::clone(&s.live)).collect();
    lives.push(Arc::clone(&compactor_stats.live));

    std::thread::scope(|s| {
        let mut residue = None;
        let workers: Vec<_> = worker_stats
            .into_iter()
            .enumerate()
            .map(|(t, st)| {
                let t = u32::try_from(t).unwrap_or(u32::MAX);
                spawn_worker(s, sh, t, st, args.tid_stride, &mut residue)
            })
            .collect();
        let compactor = sh.storm.is_some().then(|| {
            std::thread::Builder::new()
                .name("compactor".into())
                .spawn_scoped(s, || workload::run_compactor(sh, &done, compactor_stats))
        });
        if args.verbose {
            let (done, lives) = (&done, &lives);
            // The monitor only reads atomics: it makes no C calls, so it cannot skew the counts.
            let _ = std::thread::Builder::new()
                .name("monitor".into())
                .spawn_scoped(s, move || monitor(sh, done, lives));
        }

        let mut all = Vec::new();
        let mut panicked = None;
        for w in workers {
            match w.map(|h| h.join()) {
                Ok(Ok(Ok(st))) => all.push(st),
                // `spawn_worker` only returns a worker that took its slot.
                Ok(Ok(Err(_))) => unreachable!("a worker in the wrong slot was kept"),
                Ok(Err(panic)) => {
                    panicked.get_or_insert(panic);
                }
                Err(e) => {
                    // Thread creation failure: stop everyone and report what we have.
                    eprintln!("ckb-probe-testbed: error: spawning a worker: {e}");
                    ffi::STOP_REQUESTED.store(true, Ordering::SeqCst);
                }
            }
        }
        let duration = sh.start.elapsed();
        // Lets the compactor and the monitor finish, so the scope can end.
        done.store(true, Ordering::SeqCst);
        if let Some(c) = compactor {
            match c.map(|h| h.join()) {
                Ok(Ok(st)) => all.push(st),
                Ok(Err(panic)) => {
                    panicked.get_or_insert(panic);
                }
                Err(e) => eprintln!("ckb-probe-testbed: warning: no compactor thread: {e}"),
            }
        }
        if let Some(panic) = panicked {
            std::panic::resume_unwind(panic);
        }
        (all, duration)
    })
}

type Worker<'scope> = std::thread::ScopedJoinHandle<'scope, Result<ThreadStats, Box<ThreadStats>>>;

/// Starts worker `t`. With `--tid-stride N`, worker 0 sets `residue` to its thread id modulo
/// N, and every later worker is started again (its stats handed back unused) until its thread
/// id has that residue. Thread ids come from the kernel's pid allocator, shared with every
/// other process, so a try can skip the residue; then the next round of N ids brings it back.
fn spawn_worker<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    sh: &'scope Shared<'env>,
    t: u32,
    mut st: ThreadStats,
    stride: Option<u32>,
    residue: &mut Option<u32>,
) -> std::io::Result<Worker<'scope>> {
    loop {
        let (tx, rx) = std::sync::mpsc::channel();
        let want = stride.zip(*residue);
        let h = std::thread::Builder::new()
            .name(format!("worker-{t}"))
            .spawn_scoped(s, move || {
                let tid = current_tid();
                let fits = want.is_none_or(|(n, r)| tid % n == r);
                let _ = tx.send(tid);
                if !fits {
                    return Err(Box::new(st));
                }
                Ok(workload::run_worker(sh, t, st))
            })?;
        let Some(n) = stride else {
            return Ok(h);
        };
        let tid = rx.recv().map_err(std::io::Error::other)?;
        match residue {
            None => {
                *residue = Some(tid % n);
                return Ok(h);
            }
            Some(r) if tid % n == *r => return Ok(h),
            Some(_) => match h.join() {
                Ok(Err(back)) => st = *back,
                _ => return Err(std::io::Error::other("a worker thread panicked")),
            },
        }
    }
}

/// This thread's id, from `/proc/thread-self` (`PID/task/TID`): no unsafe code here.
fn current_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// `--verbose`: one line per second with mean latency per category over that second.
fn monitor(sh: &Shared<'_>, done: &AtomicBool, lives: &[Arc<Live>]) {
    let snapshot = || {
        let mut it = 0;
        let mut sum = [0u64; NUM_CATS];
        let mut cnt = [0u64; NUM_CATS];
        for l in lives {
            it += l.iterations.load(Ordering::Relaxed);
            for c in 0..NUM_CATS {
                sum[c] += l.sum_ns[c].load(Ordering::Relaxed);
                cnt[c] += l.count[c].load(Ordering::Relaxed);
            }
        }
        (it, sum, cnt)
    };
    let mut prev = snapshot();
    let mut second = 1u64;
    loop {
        let tick = sh.start + Duration::from_secs(second);
        while Instant::now() < tick {
            if done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let cur = snapshot();
        let storm = sh.storm.is_some_and(|s| s.contains(second as f64 - 0.5));
        let mut line = format!("[testbed] t={second:>3}s iters={:>6}", cur.0 - prev.0);
        for (c, name) in CAT_NAMES.iter().enumerate() {
            let n = cur.2[c] - prev.2[c];
            if n > 0 {
                let mean_us = (cur.1[c] - prev.1[c]) as f64 / n as f64 / 1000.0;
                line.push_str(&format!(" {name}={mean_us:.1}us/{n}"));
            }
        }
        if storm {
            line.push_str(" STORM");
        }
        eprintln!("{line}");
        prev = cur;
        second += 1;
    }
}

/// `--verbose`: normal vs storm mean latency per category.
fn report_phases(phase: &[[truth::PhaseLat; NUM_CATS]; 2]) {
    for (c, name) in CAT_NAMES.iter().enumerate() {
        let [n, s] = [phase[0][c], phase[1][c]];
        let mean = |p: truth::PhaseLat| (p.count > 0).then(|| p.sum_ns as f64 / p.count as f64);
        match (mean(n), mean(s)) {
            (Some(a), Some(b)) => eprintln!(
                "[testbed] {:<7} normal {:>10.1}us (n={}) storm {:>10.1}us (n={}) ratio {:.1}x",
                name,
                a / 1000.0,
                n.count,
                b / 1000.0,
                s.count,
                b / a
            ),
            (Some(a), None) => eprintln!(
                "[testbed] {:<7} mean {:>10.1}us (n={})",
                name,
                a / 1000.0,
                n.count
            ),
            (None, Some(b)) => {
                eprintln!(
                    "[testbed] {:<7} storm-only {:>10.1}us (n={})",
                    name,
                    b / 1000.0,
                    s.count
                )
            }
            (None, None) => {}
        }
    }
}

/// Writes the JSON to `path` atomically (readers never see a partial file), or to stdout.
fn write_output(path: Option<&Path>, json: &str) -> Result<()> {
    match path {
        // A device or a pipe (`--output /dev/null`) is written in place: renaming over it would
        // replace the device node with a regular file.
        Some(path) if path.exists() && !path.is_file() => {
            std::fs::write(path, format!("{json}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Some(path) => {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, format!("{json}\n"))
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{json}").and_then(|_| out.flush()).is_err() {
                bail!("writing the ground truth to stdout");
            }
        }
    }
    Ok(())
}
