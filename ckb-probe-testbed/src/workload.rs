//! The CKB-shaped workload: what each worker does per iteration, the preload, and the storm's
//! compaction thread. Every C call goes through `ffi` and is counted here, right next to it.
//!
//! Key space (all keys are exactly `--key-size` bytes: region tag, thread, index, padding):
//! - `s`: stable keys, preloaded in every column family and never written again, so a read of
//!   one is a guaranteed hit;
//! - `m`: never written, so a read of one is a guaranteed miss;
//! - `c`: churn keys overwritten by the workload (a window per thread, bounding DB size);
//! - `d`: doomed keys: every delete removes one that an earlier put wrote.
//!
//! Threads only write their own keys, so optimistic commits never conflict with each other.

use crate::ffi::{
    Db, MallocValue, Pinned, ReadOptions, RocksError, TxnOptions, WriteBatch, WriteOptions,
};
use crate::truth::{DEFAULT_CF, Func, NUM_CFS, Outcome, ThreadStats};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Stable keys per thread per column family.
pub const STABLE_KEYS: u64 = 128;
/// Distinct churn keys per thread before indices wrap around.
const CHURN_WINDOW: u64 = 1024;
/// Storm writes land on keys that storm reads then fetch back: this many per thread.
const BIG_RING: usize = 16;
pub const STORM_VALUE_MIN: usize = 256 << 10;
pub const STORM_VALUE_MAX: usize = 1 << 20;
/// Slack at the end of the value buffer so values start at varying offsets.
const VALUE_JITTER: usize = 4096;
/// Iteration `i` with `i % VARIANT_EVERY == 0` also exercises the non-CF and plain variants.
pub const VARIANT_EVERY: u64 = 8;
/// Reads per iteration of each kind (kept in one place for the tests' formula).
pub const TXN_GET_PINNED: u32 = 2;
pub const TXN_CHURN_PUTS: u32 = 3;
pub const PLAIN_GETS: u32 = 4;
pub const BATCH_CHURN_PUTS: u32 = 2;
pub const ITER_NEXTS: u32 = 3;

const REGION_STABLE: u8 = b's';
const REGION_MISS: u8 = b'm';
const REGION_CHURN: u8 = b'c';
const REGION_DOOMED: u8 = b'd';

/// Column families that CKB writes most (cells, block extensions, transaction infos) get more
/// of the traffic; indices are handle indices (CF name + 1).
const CF_TABLE: [usize; 28] = [
    1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 8, 9, 9, 9, 9, 10, 11, 12, 13, 14, 15, 16, 17, 17, 17, 17, 18, 19,
];

/// Everything the threads share (read-only).
pub struct Shared<'a> {
    pub db: &'a Db,
    pub ro: ReadOptions,
    pub wo_normal: WriteOptions,
    pub wo_storm: WriteOptions,
    pub txn_opts: TxnOptions,
    pub key_size: usize,
    pub value_size: usize,
    pub hit_ratio: f64,
    pub max_iterations: Option<u64>,
    /// Seconds between two iterations of one thread; `None` = unthrottled.
    pub interval: Option<f64>,
    pub storm: Option<crate::cli::Storms>,
    pub start: Instant,
    pub deadline: Instant,
    /// Calls left out of every iteration (`--skip`).
    pub skip: Vec<Func>,
}

impl Shared<'_> {
    pub fn in_storm(&self, now: Instant) -> bool {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        self.storm.is_some_and(|s| s.contains(t))
    }

    fn calls(&self, f: Func) -> bool {
        !self.skip.contains(&f)
    }

    fn stop_requested() -> bool {
        crate::ffi::STOP_REQUESTED.load(Ordering::Relaxed)
    }
}

/// xorshift64*: deterministic per thread, so `--max-iterations` runs are reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits -> uniform in [0, 1); p = 1.0 is always true, p = 0.0 never.
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn cf(&mut self) -> usize {
        CF_TABLE[self.below(CF_TABLE.len() as u64) as usize]
    }
}

fn fill_key(buf: &mut [u8], region: u8, thread: u32, idx: u64) {
    buf[0] = region;
    buf[1..5].copy_from_slice(&thread.to_be_bytes());
    buf[5..13].copy_from_slice(&idx.to_be_bytes());
    buf[13..].fill(b'.');
}

fn fill_random(buf: &mut [u8], seed: u64) {
    let mut rng = Rng::new(seed);
    for chunk in buf.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

fn elapsed_ns(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn outcome(r: &Result<(), RocksError>) -> Outcome {
    if r.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    }
}

/// Writes the stable keys every thread reads (not counted: happens before READY).
pub fn preload(
    db: &Db,
    threads: u32,
    key_size: usize,
    value_size: usize,
) -> Result<(), RocksError> {
    let wo = WriteOptions::new(false);
    let mut key = vec![0u8; key_size];
    let mut value = vec![0u8; value_size];
    for t in 0..threads {
        for cf in 0..NUM_CFS {
            let mut batch = WriteBatch::new();
            for i in 0..STABLE_KEYS {
                fill_key(&mut key, REGION_STABLE, t, i);
                fill_random(&mut value, (u64::from(t) << 32) ^ ((cf as u64) << 16) ^ i);
                batch.put_cf(db.cf(cf), &key, &value);
            }
            let r = db.write(&wo, &mut batch);
            batch.destroy();
            r?;
        }
    }
    Ok(())
}

struct Worker<'s, 'db> {
    sh: &'s Shared<'db>,
    thread: u32,
    st: ThreadStats,
    rng: Rng,
    key: Vec<u8>,
    values: Vec<u8>,
    churn_next: u64,
    doomed_next: u64,
    /// Doomed keys written and not yet deleted: (cf, index); the default CF has its own queue
    /// for the non-CF delete variants.
    doomed: VecDeque<(usize, u64)>,
    doomed_default: VecDeque<u64>,
    /// Big values written during the storm (cf, churn index), read back by storm GETs.
    big: VecDeque<(usize, u64)>,
}

/// Runs one worker thread until the deadline, `--max-iterations`, or a stop signal.
pub fn run_worker(sh: &Shared<'_>, thread: u32, stats: ThreadStats) -> ThreadStats {
    let max_value = if sh.storm.is_some() {
        sh.value_size.max(STORM_VALUE_MAX)
    } else {
        sh.value_size
    };
    let mut values = vec![0u8; max_value + VALUE_JITTER];
    fill_random(&mut values, 0xC0FFEE ^ u64::from(thread));
    let mut w = Worker {
        sh,
        thread,
        st: stats,
        rng: Rng::new(u64::from(thread) + 1),
        key: vec![0u8; sh.key_size],
        values,
        churn_next: 0,
        doomed_next: 0,
        doomed: VecDeque::new(),
        doomed_default: VecDeque::new(),
        big: VecDeque::new(),
    };
    let cpu_at_start = crate::ffi::thread_cpu_ns();
    let mut schedule_base = sh.start;
    let mut scheduled: u64 = 0;
    let mut i: u64 = 0;
    loop {
        if sh.max_iterations.is_some_and(|m| i >= m) || Shared::stop_requested() {
            break;
        }
        if let Some(interval) = sh.interval {
            let due = schedule_base + Duration::from_secs_f64(interval * scheduled as f64);
            let now = Instant::now();
            if now < due {
                if !sleep_until(due.min(sh.deadline)) {
                    break;
                }
            } else if now - due > Duration::from_millis(100) {
                // Far behind (e.g. after a storm): restart the schedule instead of bursting.
                schedule_base = now;
                scheduled = 0;
            }
            scheduled += 1;
        }
        let now = Instant::now();
        if now >= sh.deadline {
            break;
        }
        let storm = sh.in_storm(now);
        if w.st.in_storm && !storm {
            w.big.clear();
        }
        w.st.in_storm = storm;
        w.iteration(i);
        w.st.finish_iteration();
        i += 1;
    }
    w.st.cpu_ns = crate::ffi::thread_cpu_ns().saturating_sub(cpu_at_start);
    w.st
}

/// Sleeps until `t`, waking early on a stop signal; false if stopped.
fn sleep_until(t: Instant) -> bool {
    loop {
        if Shared::stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(20)));
    }
}

impl Worker<'_, '_> {
    fn write_options(&self) -> &WriteOptions {
        if self.st.in_storm {
            &self.sh.wo_storm
        } else {
            &self.sh.wo_normal
        }
    }

    /// Picks a value for the next put: `(offset, len)` into `self.values`.
    fn value_span(&mut self) -> (usize, usize) {
        let len = if self.st.in_storm {
            STORM_VALUE_MIN
                + self
                    .rng
                    .below((STORM_VALUE_MAX - STORM_VALUE_MIN + 1) as u64)
                    as usize
        } else {
            self.sh.value_size
        };
        (self.rng.below(VALUE_JITTER as u64) as usize, len)
    }

    /// Fills `self.key` with a read target in a CKB column family and returns the CF: a hit with
    /// probability `--hit-ratio` (during the storm, preferably a freshly written big value).
    fn pick_read(&mut self) -> usize {
        let cf = self.rng.cf();
        if self.rng.chance(self.sh.hit_ratio) {
            if self.st.in_storm && !self.big.is_empty() {
                let (cf, idx) = self.big[self.rng.below(self.big.len() as u64) as usize];
                fill_key(&mut self.key, REGION_CHURN, self.thread, idx);
                return cf;
            }
            let idx = self.rng.below(STABLE_KEYS);
            fill_key(&mut self.key, REGION_STABLE, self.thread, idx);
        } else {
            let idx = self.rng.next();
            fill_key(&mut self.key, REGION_MISS, self.thread, idx);
        }
        cf
    }

    /// As `pick_read`, for the functions that always use the default column family.
    fn pick_read_default(&mut self) {
        let (region, idx) = if self.rng.chance(self.sh.hit_ratio) {
            (REGION_STABLE, self.rng.below(STABLE_KEYS))
        } else {
            (REGION_MISS, self.rng.next())
        };
        fill_key(&mut self.key, region, self.thread, idx);
    }

    fn churn_key(&mut self) -> u64 {
        let idx = self.churn_next % CHURN_WINDOW;
        self.churn_next += 1;
        fill_key(&mut self.key, REGION_CHURN, self.thread, idx);
        idx
    }

    fn doomed_key(&mut self) -> u64 {
        let idx = self.doomed_next;
        self.doomed_next += 1;
        fill_key(&mut self.key, REGION_DOOMED, self.thread, idx);
        idx
    }

    /// Fills `self.key` with the oldest doomed key and returns its CF (a never-written doomed
    /// key if the queue is empty: deleting it is still a valid delete).
    fn pop_doomed(&mut self) -> usize {
        let (cf, idx) = self.doomed.pop_front().unwrap_or((self.rng.cf(), u64::MAX));
        fill_key(&mut self.key, REGION_DOOMED, self.thread, idx);
        cf
    }

    fn pop_doomed_default(&mut self) {
        let idx = self.doomed_default.pop_front().unwrap_or(u64::MAX);
        fill_key(&mut self.key, REGION_DOOMED, self.thread, idx);
    }

    fn remember_big(&mut self, written: &[(usize, u64)]) {
        if self.st.in_storm {
            for &e in written {
                if self.big.len() == BIG_RING {
                    self.big.pop_front();
                }
                self.big.push_back(e);
            }
        }
    }

    /// Counts a `rocksdb_*get_pinned*` result and releases the slice.
    fn finish_pinned(
        &mut self,
        f: Func,
        cf: usize,
        r: Result<Option<Pinned>, RocksError>,
        ns: u64,
    ) {
        match r {
            Ok(Some(p)) => {
                let len = p.value_len() as u64;
                self.st
                    .count(Func::PinnableSliceValue, DEFAULT_CF, Outcome::Ok);
                p.destroy();
                self.st
                    .count(Func::PinnableSliceDestroy, DEFAULT_CF, Outcome::Ok);
                self.st.record(f, cf, Outcome::Hit(len), len, ns);
            }
            Ok(None) => self.st.record(f, cf, Outcome::Miss, 0, ns),
            Err(_) => self.st.record(f, cf, Outcome::Error, 0, ns),
        }
    }

    /// Counts a malloc-returning GET result and frees the value with `rocksdb_free`.
    fn finish_malloc(
        &mut self,
        f: Func,
        cf: usize,
        r: Result<Option<MallocValue>, RocksError>,
        ns: u64,
    ) {
        match r {
            Ok(Some(v)) => {
                let len = v.len() as u64;
                v.free();
                self.st.count(Func::Free, DEFAULT_CF, Outcome::Ok);
                self.st.record(f, cf, Outcome::Hit(len), len, ns);
            }
            Ok(None) => self.st.record(f, cf, Outcome::Miss, 0, ns),
            Err(_) => self.st.record(f, cf, Outcome::Error, 0, ns),
        }
    }

    fn iteration(&mut self, i: u64) {
        self.block_commit();
        self.plain_reads();
        self.write_batch();
        self.iterate();
        if i.is_multiple_of(VARIANT_EVERY) {
            self.variants();
        }
    }

    /// CKB's block commit: read, read-for-update, puts, a delete, commit.
    fn block_commit(&mut self) {
        let sh = self.sh;
        let db = sh.db;
        let mut txn = db.begin(self.write_options(), &sh.txn_opts);
        self.st.count(Func::TxnBegin, DEFAULT_CF, Outcome::Ok);

        for _ in 0..TXN_GET_PINNED {
            let cf = self.pick_read();
            let t0 = Instant::now();
            let r = txn.get_pinned_cf(&sh.ro, db.cf(cf), &self.key);
            let ns = elapsed_ns(t0);
            self.finish_pinned(Func::TxnGetPinnedCf, cf, r, ns);
        }

        let cf = self.pick_read();
        let t0 = Instant::now();
        let r = txn.get_for_update_cf(&sh.ro, db.cf(cf), &self.key);
        let ns = elapsed_ns(t0);
        self.finish_malloc(Func::TxnGetForUpdateCf, cf, r, ns);

        let mut txn_bytes = 0u64;
        let mut written = [(0usize, 0u64); TXN_CHURN_PUTS as usize];
        let mut n_written = 0;
        for j in 0..=TXN_CHURN_PUTS as usize {
            let cf = self.rng.cf();
            let churn = j < TXN_CHURN_PUTS as usize;
            let idx = if churn {
                self.churn_key()
            } else {
                self.doomed_key()
            };
            let (off, len) = self.value_span();
            let t0 = Instant::now();
            let r = txn.put_cf(db.cf(cf), &self.key, &self.values[off..off + len]);
            let ns = elapsed_ns(t0);
            let bytes = (self.key.len() + len) as u64;
            txn_bytes += bytes;
            self.st.record(Func::TxnPutCf, cf, outcome(&r), bytes, ns);
            if churn {
                written[n_written] = (cf, idx);
                n_written += 1;
            } else {
                self.doomed.push_back((cf, idx));
            }
        }

        let cf = self.pop_doomed();
        let t0 = Instant::now();
        let r = txn.delete_cf(db.cf(cf), &self.key);
        let ns = elapsed_ns(t0);
        txn_bytes += self.key.len() as u64;
        self.st.record(Func::TxnDeleteCf, cf, outcome(&r), 0, ns);

        let t0 = Instant::now();
        let r = txn.commit();
        let ns = elapsed_ns(t0);
        self.st
            .record(Func::TxnCommit, DEFAULT_CF, outcome(&r), txn_bytes, ns);
        if r.is_ok() {
            self.remember_big(&written);
        }

        txn.destroy();
        self.st.count(Func::TxnDestroy, DEFAULT_CF, Outcome::Ok);
    }

    /// Non-transactional point reads on the base DB.
    fn plain_reads(&mut self) {
        let sh = self.sh;
        for _ in 0..PLAIN_GETS {
            let cf = self.pick_read();
            let t0 = Instant::now();
            let r = sh.db.get_pinned_cf(&sh.ro, sh.db.cf(cf), &self.key);
            let ns = elapsed_ns(t0);
            self.finish_pinned(Func::GetPinnedCf, cf, r, ns);
        }
    }

    /// A write batch: churn puts, a doomed put, a delete, write.
    fn write_batch(&mut self) {
        let sh = self.sh;
        let db = sh.db;
        let mut batch = WriteBatch::new();
        self.st.count(Func::WbCreate, DEFAULT_CF, Outcome::Ok);
        let mut batch_bytes = 0u64;
        let mut written = [(0usize, 0u64); BATCH_CHURN_PUTS as usize];
        let mut n_written = 0;
        for j in 0..=BATCH_CHURN_PUTS as usize {
            let cf = self.rng.cf();
            let churn = j < BATCH_CHURN_PUTS as usize;
            let idx = if churn {
                self.churn_key()
            } else {
                self.doomed_key()
            };
            let (off, len) = self.value_span();
            let t0 = Instant::now();
            batch.put_cf(db.cf(cf), &self.key, &self.values[off..off + len]);
            let ns = elapsed_ns(t0);
            let bytes = (self.key.len() + len) as u64;
            batch_bytes += bytes;
            self.st.record(Func::WbPutCf, cf, Outcome::Ok, bytes, ns);
            if churn {
                written[n_written] = (cf, idx);
                n_written += 1;
            } else {
                self.doomed.push_back((cf, idx));
            }
        }
        let cf = self.pop_doomed();
        let t0 = Instant::now();
        batch.delete_cf(db.cf(cf), &self.key);
        let ns = elapsed_ns(t0);
        batch_bytes += self.key.len() as u64;
        self.st.record(Func::WbDeleteCf, cf, Outcome::Ok, 0, ns);

        let t0 = Instant::now();
        let r = db.write(self.write_options(), &mut batch);
        let ns = elapsed_ns(t0);
        self.st
            .record(Func::Write, DEFAULT_CF, outcome(&r), batch_bytes, ns);
        if r.is_ok() {
            self.remember_big(&written);
        }
        batch.destroy();
        self.st.count(Func::WbDestroy, DEFAULT_CF, Outcome::Ok);
    }

    /// A short range scan plus the positioning calls.
    fn iterate(&mut self) {
        let sh = self.sh;
        let cf = self.rng.cf();
        let mut it = sh.db.iter_cf(&sh.ro, sh.db.cf(cf));
        self.st.count(Func::CreateIteratorCf, cf, Outcome::Ok);

        // Leaves room for ITER_NEXTS more stable keys after the seek target.
        let idx = self.rng.below(STABLE_KEYS - u64::from(ITER_NEXTS));
        fill_key(&mut self.key, REGION_STABLE, self.thread, idx);
        if sh.calls(Func::IterSeek) {
            let t0 = Instant::now();
            it.seek(&self.key);
            let ns = elapsed_ns(t0);
            self.st
                .record(Func::IterSeek, DEFAULT_CF, Outcome::Ok, 0, ns);
        }

        for _ in 0..ITER_NEXTS {
            if !sh.calls(Func::IterNext) {
                break;
            }
            let valid = it.valid();
            self.st.count(Func::IterValid, DEFAULT_CF, Outcome::Ok);
            if !valid {
                break;
            }
            let t0 = Instant::now();
            it.next();
            let ns = elapsed_ns(t0);
            self.st
                .record(Func::IterNext, DEFAULT_CF, Outcome::Ok, 0, ns);
        }

        fill_key(&mut self.key, REGION_STABLE, self.thread, idx + 1);
        if sh.calls(Func::IterSeekForPrev) {
            let t0 = Instant::now();
            it.seek_for_prev(&self.key);
            let ns = elapsed_ns(t0);
            self.st
                .record(Func::IterSeekForPrev, DEFAULT_CF, Outcome::Ok, 0, ns);
        }

        if sh.calls(Func::IterSeekToFirst) {
            let t0 = Instant::now();
            it.seek_to_first();
            let ns = elapsed_ns(t0);
            self.st
                .record(Func::IterSeekToFirst, DEFAULT_CF, Outcome::Ok, 0, ns);
        }

        if sh.calls(Func::IterSeekToLast) {
            let t0 = Instant::now();
            it.seek_to_last();
            let ns = elapsed_ns(t0);
            self.st
                .record(Func::IterSeekToLast, DEFAULT_CF, Outcome::Ok, 0, ns);
        }

        let r = it.status();
        self.st.count(Func::IterGetError, DEFAULT_CF, outcome(&r));
        it.destroy();
        self.st.count(Func::IterDestroy, DEFAULT_CF, Outcome::Ok);
    }

    /// The less common variants, so that every traced function is exercised.
    fn variants(&mut self) {
        let sh = self.sh;
        let db = sh.db;

        self.pick_read_default();
        let t0 = Instant::now();
        let r = db.get(&sh.ro, &self.key);
        let ns = elapsed_ns(t0);
        self.finish_malloc(Func::Get, DEFAULT_CF, r, ns);

        self.pick_read_default();
        let t0 = Instant::now();
        let r = db.get_pinned(&sh.ro, &self.key);
        let ns = elapsed_ns(t0);
        self.finish_pinned(Func::GetPinned, DEFAULT_CF, r, ns);

        let cf = self.pick_read();
        let t0 = Instant::now();
        let r = db.get_cf(&sh.ro, db.cf(cf), &self.key);
        let ns = elapsed_ns(t0);
        self.finish_malloc(Func::GetCf, cf, r, ns);

        let idx = self.doomed_key();
        let (off, len) = self.value_span();
        let t0 = Instant::now();
        let r = db.put(
            self.write_options(),
            &self.key,
            &self.values[off..off + len],
        );
        let ns = elapsed_ns(t0);
        self.st.record(
            Func::Put,
            DEFAULT_CF,
            outcome(&r),
            (self.key.len() + len) as u64,
            ns,
        );
        self.doomed_default.push_back(idx);

        let cf = self.rng.cf();
        let idx = self.churn_key();
        let (off, len) = self.value_span();
        let t0 = Instant::now();
        let r = db.put_cf(
            self.write_options(),
            db.cf(cf),
            &self.key,
            &self.values[off..off + len],
        );
        let ns = elapsed_ns(t0);
        self.st.record(
            Func::PutCf,
            cf,
            outcome(&r),
            (self.key.len() + len) as u64,
            ns,
        );
        if r.is_ok() {
            self.remember_big(&[(cf, idx)]);
        }

        self.pop_doomed_default();
        let t0 = Instant::now();
        let r = db.delete(self.write_options(), &self.key);
        let ns = elapsed_ns(t0);
        self.st.record(Func::Delete, DEFAULT_CF, outcome(&r), 0, ns);

        let cf = self.pop_doomed();
        let t0 = Instant::now();
        let r = db.delete_cf(self.write_options(), db.cf(cf), &self.key);
        let ns = elapsed_ns(t0);
        self.st.record(Func::DeleteCf, cf, outcome(&r), 0, ns);

        // A batch on the default column family through the non-CF batch calls.
        let mut batch = WriteBatch::new();
        self.st.count(Func::WbCreate, DEFAULT_CF, Outcome::Ok);
        let mut batch_bytes = 0u64;
        for doomed in [false, true] {
            let idx = if doomed {
                self.doomed_key()
            } else {
                self.churn_key()
            };
            let (off, len) = self.value_span();
            let t0 = Instant::now();
            batch.put(&self.key, &self.values[off..off + len]);
            let ns = elapsed_ns(t0);
            let bytes = (self.key.len() + len) as u64;
            batch_bytes += bytes;
            self.st
                .record(Func::WbPut, DEFAULT_CF, Outcome::Ok, bytes, ns);
            if doomed {
                self.doomed_default.push_back(idx);
            }
        }
        self.pop_doomed_default();
        let t0 = Instant::now();
        batch.delete(&self.key);
        let ns = elapsed_ns(t0);
        batch_bytes += self.key.len() as u64;
        self.st
            .record(Func::WbDelete, DEFAULT_CF, Outcome::Ok, 0, ns);

        let t0 = Instant::now();
        let r = db.write(self.write_options(), &mut batch);
        let ns = elapsed_ns(t0);
        self.st
            .record(Func::Write, DEFAULT_CF, outcome(&r), batch_bytes, ns);
        batch.destroy();
        self.st.count(Func::WbDestroy, DEFAULT_CF, Outcome::Ok);
    }
}

/// The storm's compaction thread: full-range manual compactions of the CKB column families, one
/// after the other, while the storm lasts. `done` is set once the workers have finished.
pub fn run_compactor(sh: &Shared<'_>, done: &AtomicBool, mut st: ThreadStats) -> ThreadStats {
    let Some(storm_end) = sh.storm.map(|s| s.last_end()) else {
        return st;
    };
    st.in_storm = true;
    let mut cf = 1;
    loop {
        if done.load(Ordering::Relaxed) || Shared::stop_requested() {
            break;
        }
        let now = Instant::now();
        if sh.in_storm(now) {
            let t0 = Instant::now();
            sh.db.compact_range_cf(sh.db.cf(cf));
            let ns = elapsed_ns(t0);
            st.record(Func::CompactRangeCf, cf, Outcome::Ok, 0, ns);
            cf = if cf + 1 < NUM_CFS { cf + 1 } else { 1 };
        } else if now.saturating_duration_since(sh.start).as_secs_f64() >= storm_end {
            break;
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_orders_regions_and_indices() {
        let mut a = vec![0u8; 32];
        let mut b = vec![0u8; 32];
        fill_key(&mut a, REGION_STABLE, 1, 5);
        fill_key(&mut b, REGION_STABLE, 1, 6);
        assert!(a < b);
        fill_key(&mut b, REGION_MISS, 1, u64::MAX);
        assert!(b < a, "misses sort before stable keys");
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn rng_chance_extremes() {
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.chance(1.0)));
        assert!((0..1000).all(|_| !r.chance(0.0)));
        assert!((0..1000).all(|_| (1..NUM_CFS).contains(&r.cf())));
    }
}
