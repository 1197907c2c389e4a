//! Synthetic `rocksdb_*` functions with known prologues, for ckb-probe's probe-site choice: no
//! RocksDB, only what the kernel programs read (the arguments) and what a uprobe costs (the
//! first instructions).
//!
//! - `rocksdb_writebatch_clear` starts like CKB's `rocksdb_iter_seek`, with `sub $0x18,%rsp`
//!   (single-stepped), then `push %rbx` (emulated): an entry-only probe moves to +4.
//! - `rocksdb_transaction_destroy` starts with `sub $0x28,%rsp`, then the kernel's 6-byte nop
//!   (`nopw 0x0(%rax,%rax,1)`), which Linux 6.16 and later emulate.
//! - `rocksdb_writebatch_put` and `rocksdb_write` start with `push %rbx` (emulated) and are
//!   probed on entry and return.
//!
//! Prints `READY pid=P`, waits for `--start-file`, then:
//! 1. times `--calls` calls of each single-stepped-first function (ns per call, as the probe
//!    costs them);
//! 2. runs `--batches` rounds of `writebatch_put(b, 3 + 5 bytes)`, `writebatch_clear(b)`,
//!    `writebatch_put(b, 1 + 1 bytes)`, `write(db, wo, b, NULL)`: each write's byte count is 2
//!    exactly when every clear's entry-only program ran once with the right batch pointer.
//!
//! The truth (calls and bytes per function, ns per call) is written as JSON to `--output`.

use std::{
    hint::black_box,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;
use serde_json::json;

std::arch::global_asm!(
    ".pushsection .text.ckb_probe_sitebed,\"ax\",@progbits",
    ".globl rocksdb_writebatch_clear",
    ".type rocksdb_writebatch_clear,@function",
    "rocksdb_writebatch_clear:",
    "sub $0x18, %rsp",
    "push %rbx",
    "mov %rdi, %rbx",
    "pop %rbx",
    "add $0x18, %rsp",
    "ret",
    ".size rocksdb_writebatch_clear, .-rocksdb_writebatch_clear",
    ".globl rocksdb_transaction_destroy",
    ".type rocksdb_transaction_destroy,@function",
    "rocksdb_transaction_destroy:",
    "sub $0x28, %rsp",
    ".byte 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00",
    "add $0x28, %rsp",
    "ret",
    ".size rocksdb_transaction_destroy, .-rocksdb_transaction_destroy",
    ".globl rocksdb_writebatch_put",
    ".type rocksdb_writebatch_put,@function",
    "rocksdb_writebatch_put:",
    "push %rbx",
    "pop %rbx",
    "ret",
    ".size rocksdb_writebatch_put, .-rocksdb_writebatch_put",
    ".globl rocksdb_write",
    ".type rocksdb_write,@function",
    "rocksdb_write:",
    "push %rbx",
    "pop %rbx",
    "ret",
    ".size rocksdb_write, .-rocksdb_write",
    ".popsection",
    options(att_syntax)
);

unsafe extern "C" {
    fn rocksdb_writebatch_clear(batch: *mut u8);
    fn rocksdb_transaction_destroy(txn: *mut u8);
    fn rocksdb_writebatch_put(
        batch: *mut u8,
        key: *const u8,
        klen: usize,
        val: *const u8,
        vlen: usize,
    );
    fn rocksdb_write(db: *mut u8, wo: *const u8, batch: *mut u8, errptr: *mut *mut u8);
}

#[derive(Parser)]
#[command(about = "Synthetic rocksdb_* functions with known prologues, for probe-site tests")]
struct Args {
    /// Print READY, then wait for this file before running.
    #[arg(long)]
    start_file: Option<PathBuf>,
    /// Where to write the ground-truth JSON (default: stdout, last line).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Accepted for the test support's testbed protocol; unused.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Timed calls of each function whose first instruction is single-stepped.
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    /// Put/clear/put/write rounds.
    #[arg(long, default_value_t = 1_000)]
    batches: u64,
    /// Seconds to stay alive after the workload (so late events are still traced).
    #[arg(long, default_value_t = 0.3)]
    linger: f64,
}

fn ns_per_call(calls: u64, f: unsafe extern "C" fn(*mut u8), arg: *mut u8) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        // SAFETY: the synthetic functions only move the stack pointer and restore it.
        unsafe { f(black_box(arg)) };
    }
    t.elapsed().as_nanos() as f64 / calls.max(1) as f64
}

fn main() -> ExitCode {
    let args = Args::parse();
    println!("READY pid={}", std::process::id());
    if let Some(f) = &args.start_file {
        while !f.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let mut batch = [0u8; 64];
    let b = batch.as_mut_ptr();
    let clear_ns = ns_per_call(args.calls, rocksdb_writebatch_clear, b);
    let destroy_ns = ns_per_call(args.calls, rocksdb_transaction_destroy, b);
    let (db, wo) = ([0u8; 8], [0u8; 8]);
    let kv = [0u8; 8];
    for _ in 0..args.batches {
        // SAFETY: the synthetic functions read no memory through their arguments.
        unsafe {
            rocksdb_writebatch_put(b, kv.as_ptr(), 3, kv.as_ptr(), 5);
            rocksdb_writebatch_clear(b);
            rocksdb_writebatch_put(b, kv.as_ptr(), 1, kv.as_ptr(), 1);
            rocksdb_write(db.as_ptr().cast_mut(), wo.as_ptr(), b, std::ptr::null_mut());
        }
    }
    let n = args.batches;
    let truth = json!({
        "functions": {
            "rocksdb_writebatch_put": { "calls": 2 * n, "bytes": 10 * n },
            "rocksdb_write": { "calls": n, "bytes": 2 * n },
            "rocksdb_writebatch_clear": { "calls": n + args.calls },
            "rocksdb_transaction_destroy": { "calls": args.calls },
        },
        "ns_per_call": {
            "rocksdb_writebatch_clear": clear_ns,
            "rocksdb_transaction_destroy": destroy_ns,
        },
    });
    std::thread::sleep(Duration::from_secs_f64(args.linger));
    let text = truth.to_string();
    match &args.output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("ckb-probe-sitebed: error: {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        None => println!("{text}"),
    }
    ExitCode::SUCCESS
}
