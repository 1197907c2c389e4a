//! ckb-probe-sysbed: threads named like a CKB node's make exact, known numbers of known system
//! calls, and the ground truth (per thread role and syscall: calls, errors, bytes; nanosleep
//! timings) is written to `--output`: what `ckb-probe syscall` is checked against.
//!
//! Protocol (as the RocksDB testbed): print `READY pid=N`, wait for `--start-file`, run, write
//! the truth, exit. The counted calls are made through `libc::syscall` directly, so that std
//! adds none. The worker threads start only after the start file appears, one at a time (so no
//! lock is ever contended: no stray futex calls in a named thread), and never return (they
//! park until the process exits): thread start-up and exit add no calls to a counted
//! (role, syscall) pair.
//! `--bench SECS` instead runs one thread of `getppid` calls for that long and reports the rate.
#![allow(unsafe_code)]

use std::{
    collections::BTreeMap,
    io::Write as _,
    os::fd::AsRawFd,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "ckb-probe-sysbed",
    about = "Known system calls from threads with known names"
)]
struct Args {
    /// Wait for this file to exist before starting (after printing READY).
    #[arg(long)]
    start_file: Option<PathBuf>,
    /// Where to write the ground truth (JSON).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Directory for the scratch file (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// pwrite64 calls of the compaction thread (and as many pread64).
    #[arg(long, default_value_t = 400)]
    compaction_writes: u64,
    #[arg(long, default_value_t = 65_536)]
    compaction_bytes: u64,
    /// pwrite64 calls of the flush thread.
    #[arg(long, default_value_t = 100)]
    flush_writes: u64,
    #[arg(long, default_value_t = 16_384)]
    flush_bytes: u64,
    /// fdatasync calls of the flush thread.
    #[arg(long, default_value_t = 20)]
    flush_syncs: u64,
    /// getppid calls of the verify_blocks thread.
    #[arg(long, default_value_t = 5_000)]
    getppids: u64,
    /// pwrite64 (WAL-like) and fdatasync calls of the verify_blocks thread.
    #[arg(long, default_value_t = 50)]
    commit_writes: u64,
    #[arg(long, default_value_t = 300)]
    commit_bytes: u64,
    #[arg(long, default_value_t = 10)]
    commit_syncs: u64,
    /// nanosleep calls of the tokio-named thread, and their length.
    #[arg(long, default_value_t = 10)]
    sleeps: u64,
    #[arg(long, default_value_t = 20)]
    sleep_ms: u64,
    /// Timed-out futex waits of the rayon-named thread (1 ms each), and mismatched-value waits.
    #[arg(long, default_value_t = 20)]
    futex_timeouts: u64,
    #[arg(long, default_value_t = 200)]
    futex_mismatches: u64,
    /// Futex wakes (nobody waiting) of the ChainService thread.
    #[arg(long, default_value_t = 300)]
    futex_wakes: u64,
    /// sched_yield calls of a thread no role names ("worker-x").
    #[arg(long, default_value_t = 1_000)]
    yields: u64,
    /// Benchmark: one thread calls getppid for this many seconds; reports the rate.
    #[arg(long)]
    bench: Option<f64>,
}

/// Ground truth of one (role, syscall) pair.
#[derive(Serialize, Default, Clone, Copy)]
struct Calls {
    calls: u64,
    errors: u64,
    bytes: u64,
    /// Calls that waited (futex only).
    waits: u64,
}

#[derive(Serialize)]
struct Truth {
    pid: u32,
    /// Thread name → the role ckb-probe is expected to give it.
    threads: BTreeMap<&'static str, &'static str>,
    /// Role → syscall → counts, for the pairs this program controls exactly.
    roles: BTreeMap<&'static str, BTreeMap<&'static str, Calls>>,
    /// Each nanosleep as timed around the call (ns).
    nanosleep_ns: Vec<u64>,
    bench: Option<Bench>,
    duration_secs: f64,
}

#[derive(Serialize, Clone, Copy)]
struct Bench {
    calls: u64,
    secs: f64,
    calls_per_sec: f64,
    ns_per_call: f64,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckb-probe-sysbed: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `libc::syscall` with the result turned into `Ok(ret)` / `Err(errno)`.
fn sys(nr: libc::c_long, a: [libc::c_long; 4]) -> Result<i64, i32> {
    // SAFETY: callers pass arguments valid for `nr` (buffers they own, their own fd).
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3]) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// Counts one call into `c`.
fn count(c: &mut Calls, r: Result<i64, i32>, byte_count: bool) -> Result<i64, i32> {
    c.calls += 1;
    match r {
        Ok(n) if byte_count && n > 0 => c.bytes += n as u64,
        Ok(_) => {}
        Err(_) => c.errors += 1,
    }
    r
}

type RoleTruth = BTreeMap<&'static str, Calls>;

/// Worker threads report here, then park: they never exit while traced.
struct Board {
    done: AtomicUsize,
    /// Only ever locked by one worker at a time (they run one after another): never contended.
    results: std::sync::Mutex<Vec<(&'static str, RoleTruth, Vec<u64>)>>,
}

fn park() -> ! {
    loop {
        // SAFETY: pause(2) has no arguments; it returns only on a handled signal.
        unsafe { libc::pause() };
    }
}

/// Runs `work` on a new thread named `name`, and returns once it is done (the thread parks).
fn spawn(
    board: &Arc<Board>,
    name: &'static str,
    role: &'static str,
    work: impl FnOnce(&mut RoleTruth, &mut Vec<u64>) + Send + 'static,
) -> Result<()> {
    let before = board.done.load(Ordering::Acquire);
    let b = Arc::clone(board);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut truth = RoleTruth::new();
            let mut sleeps = Vec::new();
            work(&mut truth, &mut sleeps);
            b.results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((role, truth, sleeps));
            b.done.fetch_add(1, Ordering::Release);
            park()
        })
        .with_context(|| format!("spawning thread {name}"))?;
    while board.done.load(Ordering::Acquire) == before {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec (vDSO: no system call).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn run(args: &Args) -> Result<()> {
    let pid = std::process::id();
    // Everything the workers need is prepared before READY.
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("ckb-probe-sysbed-{pid}.dat"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("creating scratch file {}", path.display()))?;
    // Removed now: the open descriptor keeps the data until exit.
    let _ = std::fs::remove_file(&path);
    let fd = file.as_raw_fd() as libc::c_long;
    let max_bytes = args
        .compaction_bytes
        .max(args.flush_bytes)
        .max(args.commit_bytes);
    if max_bytes == 0 || max_bytes > 64 << 20 {
        bail!("write sizes must be between 1 byte and 64 MiB");
    }
    let board = Arc::new(Board {
        done: AtomicUsize::new(0),
        results: std::sync::Mutex::new(Vec::new()),
    });
    let futex_word: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY pid={pid}")
            .and_then(|_| out.flush())
            .context("writing READY")?;
    }
    if let Some(start) = &args.start_file {
        while !start.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let t0 = Instant::now();
    let mut threads = BTreeMap::new();

    if let Some(secs) = args.bench {
        threads.insert("bench", "other");
        let secs = secs.clamp(0.1, 600.0);
        spawn(&board, "bench", "other", move |t, _| {
            let c = t.entry("getppid").or_default();
            let end = now_ns() + (secs * 1e9) as u64;
            // Batches of 1,000 between clock reads (vDSO) keep the loop all system calls.
            while now_ns() < end {
                for _ in 0..1_000 {
                    let _ = count(c, sys(libc::SYS_getppid, [0; 4]), false);
                }
            }
        })?;
    } else {
        let (n, b) = (args.compaction_writes, args.compaction_bytes);
        threads.insert("rocksdb:low0", "compaction");
        spawn(&board, "rocksdb:low0", "compaction", move |t, _| {
            let buf = vec![0xabu8; b as usize];
            let mut rbuf = vec![0u8; b as usize];
            let w = t.entry("pwrite64").or_default();
            for i in 0..n {
                let off = (i * b) as libc::c_long;
                let _ = count(
                    w,
                    sys(libc::SYS_pwrite64, [fd, buf.as_ptr() as _, b as _, off]),
                    true,
                );
            }
            let r = t.entry("pread64").or_default();
            for i in 0..n {
                let off = (i * b) as libc::c_long;
                let _ = count(
                    r,
                    sys(libc::SYS_pread64, [fd, rbuf.as_mut_ptr() as _, b as _, off]),
                    true,
                );
            }
        })?;

        let (n, b, m) = (args.flush_writes, args.flush_bytes, args.flush_syncs);
        // Beyond the compaction thread's range, so the two never overlap.
        let base = args.compaction_writes * args.compaction_bytes;
        threads.insert("rocksdb:high0", "flush");
        spawn(&board, "rocksdb:high0", "flush", move |t, _| {
            let buf = vec![0xcdu8; b as usize];
            let w = t.entry("pwrite64").or_default();
            for i in 0..n {
                let off = (base + i * b) as libc::c_long;
                let _ = count(
                    w,
                    sys(libc::SYS_pwrite64, [fd, buf.as_ptr() as _, b as _, off]),
                    true,
                );
            }
            let s = t.entry("fdatasync").or_default();
            for _ in 0..m {
                let _ = count(s, sys(libc::SYS_fdatasync, [fd, 0, 0, 0]), false);
            }
        })?;

        let (k, n, b, m) = (
            args.getppids,
            args.commit_writes,
            args.commit_bytes,
            args.commit_syncs,
        );
        let base = base + args.flush_writes * args.flush_bytes;
        threads.insert("verify_blocks", "verify_blocks");
        spawn(&board, "verify_blocks", "verify_blocks", move |t, _| {
            let buf = vec![0xefu8; b as usize];
            let g = t.entry("getppid").or_default();
            for _ in 0..k {
                let _ = count(g, sys(libc::SYS_getppid, [0; 4]), false);
            }
            for i in 0..n {
                let off = (base + i * b) as libc::c_long;
                let _ = count(
                    t.entry("pwrite64").or_default(),
                    sys(libc::SYS_pwrite64, [fd, buf.as_ptr() as _, b as _, off]),
                    true,
                );
                if i < m {
                    let _ = count(
                        t.entry("fdatasync").or_default(),
                        sys(libc::SYS_fdatasync, [fd, 0, 0, 0]),
                        false,
                    );
                }
            }
            // Fewer writes than syncs: the remaining syncs.
            for _ in n..m {
                let _ = count(
                    t.entry("fdatasync").or_default(),
                    sys(libc::SYS_fdatasync, [fd, 0, 0, 0]),
                    false,
                );
            }
        })?;

        let (j, ms) = (args.sleeps, args.sleep_ms);
        threads.insert("GlobalRt-1", "tokio");
        spawn(&board, "GlobalRt-1", "tokio", move |t, times| {
            let ts = libc::timespec {
                tv_sec: (ms / 1_000) as libc::time_t,
                tv_nsec: ((ms % 1_000) * 1_000_000) as libc::c_long,
            };
            let c = t.entry("nanosleep").or_default();
            times.reserve(j as usize);
            for _ in 0..j {
                let a = now_ns();
                let _ = count(
                    c,
                    sys(libc::SYS_nanosleep, [&ts as *const _ as _, 0, 0, 0]),
                    false,
                );
                times.push(now_ns() - a);
            }
        })?;

        let (ft, fm) = (args.futex_timeouts, args.futex_mismatches);
        threads.insert("RayonGlobal-0", "rayon");
        spawn(&board, "RayonGlobal-0", "rayon", move |t, _| {
            let word = futex_word.as_ptr() as libc::c_long;
            let timeout = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            let c = t.entry("futex").or_default();
            // Nobody ever changes the word: each wait times out (ETIMEDOUT).
            for _ in 0..ft {
                let _ = count(
                    c,
                    sys(
                        libc::SYS_futex,
                        [
                            word,
                            (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as _,
                            0,
                            &timeout as *const _ as _,
                        ],
                    ),
                    false,
                );
                c.waits += 1;
            }
            // Expected value 1 != 0: returns EAGAIN at once, but it is a wait operation.
            for _ in 0..fm {
                let _ = count(
                    c,
                    sys(
                        libc::SYS_futex,
                        [
                            word,
                            (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as _,
                            1,
                            0,
                        ],
                    ),
                    false,
                );
                c.waits += 1;
            }
        })?;

        let fw = args.futex_wakes;
        threads.insert("ChainService", "chain_service");
        spawn(&board, "ChainService", "chain_service", move |t, _| {
            let word = futex_word.as_ptr() as libc::c_long;
            let c = t.entry("futex").or_default();
            for _ in 0..fw {
                let _ = count(
                    c,
                    sys(
                        libc::SYS_futex,
                        [
                            word,
                            (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as _,
                            1,
                            0,
                        ],
                    ),
                    false,
                );
            }
        })?;

        let y = args.yields;
        threads.insert("worker-x", "other");
        spawn(&board, "worker-x", "other", move |t, _| {
            let c = t.entry("sched_yield").or_default();
            for _ in 0..y {
                let _ = count(c, sys(libc::SYS_sched_yield, [0; 4]), false);
            }
        })?;
    }

    let duration_secs = t0.elapsed().as_secs_f64();
    let mut roles: BTreeMap<&'static str, RoleTruth> = BTreeMap::new();
    let mut nanosleep_ns = Vec::new();
    let results = std::mem::take(&mut *board.results.lock().unwrap_or_else(|e| e.into_inner()));
    for (role, truth, sleeps) in results {
        let r = roles.entry(role).or_default();
        for (call, c) in truth {
            let e = r.entry(call).or_default();
            e.calls += c.calls;
            e.errors += c.errors;
            e.bytes += c.bytes;
            e.waits += c.waits;
        }
        nanosleep_ns.extend(sleeps);
    }
    let bench = args.bench.map(|_| {
        let calls = roles["other"]["getppid"].calls;
        Bench {
            calls,
            secs: duration_secs,
            calls_per_sec: calls as f64 / duration_secs,
            ns_per_call: duration_secs * 1e9 / calls.max(1) as f64,
        }
    });
    let truth = Truth {
        pid,
        threads,
        roles,
        nanosleep_ns,
        bench,
        duration_secs,
    };
    let text = serde_json::to_string_pretty(&truth)?;
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => println!("{text}"),
    }
    drop(file);
    Ok(())
}
