//! RocksDB layer: a uprobe/uretprobe pair per traced C API function.
//!
//! Entry saves the start time and what only the arguments tell (column family, sizes, output
//! pointers) on its thread's stack of in-flight calls; return pops it, reads the outcome, then
//! updates per-CPU aggregates, the function's latency histogram and, above the threshold, the
//! slow-event ring. In entry-only mode the entry records the call itself and no return probe
//! is attached.
//!
//! The hot path makes no map update: hash-map updates take a bucket spin lock with interrupts
//! off (several hundred ns each on a VM). Per call it only looks up (lock-free) its thread's
//! record, the column-family cache and per-CPU arrays, and writes into them in place; map
//! updates happen once per thread, per column-family handle, and per transaction or batch.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::{map, uprobe, uretprobe},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext},
};
use ckb_probe_common::{
    config::{CONFIG_FLAG_CF, CONFIG_FLAG_ENTRY_ONLY},
    hist::{BUCKETS, Histogram, bucket_of},
    rocksdb::{
        ACCUM_MAX, CF_DEFAULT, CF_ID_INVALID, CF_MAX, CF_NAME_MAX, CF_UNKNOWN, CfInfo,
        EVENT_SLOW_OP, Entry, FN_COUNT, INFLIGHT_MAX, OpStats, RING_BYTES, Result_,
        SLOW_FLAG_ERROR, SLOW_FLAG_HIT, SLOW_FLAG_MISS, STATS_LEN, SlowEvent, THREADS_MAX, TRACED,
        ThreadCalls, cf_slot, counter, fn_id as f, stats_index,
    },
};

use crate::{
    target,
    util::{add, opaque, read_u64},
};

/// Each thread's in-flight calls, keyed by pid_tgid (LRU: threads come and go).
#[map]
static ROCKS_THREADS: LruHashMap<u64, ThreadCalls> = LruHashMap::with_max_entries(THREADS_MAX, 0);
/// One all-zero `ThreadCalls`, the initial value of a new thread's record (too big for the
/// BPF stack). Never written.
#[map]
static ROCKS_ZERO: Array<ThreadCalls> = Array::with_max_entries(1, 0);
/// Aggregates per (function, column-family slot): index `stats_index(fn_id, slot)`.
#[map]
static ROCKS_STATS: PerCpuArray<OpStats> = PerCpuArray::with_max_entries(STATS_LEN, 0);
#[map]
static ROCKS_HIST: PerCpuArray<Histogram> = PerCpuArray::with_max_entries(FN_COUNT as u32, 0);
#[map]
static ROCKS_CF: LruHashMap<u64, CfInfo> = LruHashMap::with_max_entries(CF_MAX, 0);
/// Payload bytes accumulated per open transaction or write batch, keyed by its pointer.
#[map]
static ROCKS_ACCUM: LruHashMap<u64, u64> = LruHashMap::with_max_entries(ACCUM_MAX, 0);
#[map]
static ROCKS_EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static ROCKS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = ROCKS_COUNTERS.get_ptr_mut(idx) {
        add(p, 1);
    }
}

/// Argument `n` (zero-based) of the probed function at its entry, System V x86-64 ABI:
/// the first six in registers, the rest on the stack above the return address.
#[inline(always)]
fn arg(ctx: &ProbeContext, n: u8) -> u64 {
    if n < 6 {
        return ctx.arg::<u64>(n as usize).unwrap_or(0);
    }
    // SAFETY: ctx.regs is the kernel-provided pt_regs of this probe hit.
    let sp = unsafe { (*ctx.regs).rsp };
    read_u64(sp + 8 * (n as u64 - 5))
}

/// Follows a `rocksdb_column_family_handle_t*` to its family: the handle wraps a
/// `ColumnFamilyHandleImpl*` whose `cfd_` (after the vtable) points to a `ColumnFamilyData`
/// starting with `uint32_t id_` and `std::string name_`. The layout is validated through
/// libstdc++'s small-string invariant (a short string's data pointer points into the object),
/// so a different layout yields "unknown", never a wrong family.
#[inline(always)]
fn chase_cf(handle: u64) -> CfInfo {
    let mut info = CfInfo {
        id: CF_ID_INVALID,
        name_len: 0,
        name: [0; CF_NAME_MAX],
    };
    let imp = read_u64(handle);
    if imp == 0 {
        return info;
    }
    let cfd = read_u64(imp + 8);
    if cfd == 0 {
        return info;
    }
    // SAFETY: checked read of user memory.
    let id = unsafe { bpf_probe_read_user((cfd) as *const u32) }.unwrap_or(CF_ID_INVALID);
    let data = read_u64(cfd + 8);
    let len = read_u64(cfd + 16);
    let sso = cfd + 24;
    let valid_short = len > 0 && len < 16 && data == sso;
    let valid_long = (16..CF_NAME_MAX as u64).contains(&len) && data != 0;
    if id >= 1 << 20 || !(valid_short || valid_long) {
        return info;
    }
    // Masked after `opaque` so the verifier sees 0 <= n < CF_NAME_MAX; `len` was checked above.
    let n = (opaque(len) & (CF_NAME_MAX as u64 - 1)) as usize;
    if n == 0 {
        return info;
    }
    // SAFETY: checked read of user memory into a bounded buffer.
    if unsafe { bpf_probe_read_user_buf(data as *const u8, &mut info.name[..n]) }.is_err() {
        return info;
    }
    info.id = id;
    info.name_len = n as u32;
    info
}

/// The column-family slot of `handle`: one lock-free lookup once the handle is known.
#[inline(always)]
fn resolve_cf(handle: u64, flags: u32) -> u64 {
    if flags & CONFIG_FLAG_CF == 0 || handle == 0 {
        return CF_UNKNOWN;
    }
    if let Some(info) = unsafe { ROCKS_CF.get(&handle) } {
        return cf_slot(info.id);
    }
    let info = chase_cf(handle);
    let _ = ROCKS_CF.insert(&handle, &info, 0);
    if info.id == CF_ID_INVALID {
        bump(counter::CF_INVALID);
    }
    cf_slot(info.id)
}

/// Adds payload bytes to the open transaction or batch `owner`.
#[inline(always)]
fn accumulate(owner: u64, bytes: u64) {
    if let Some(p) = ROCKS_ACCUM.get_ptr_mut(&owner) {
        add(p, bytes);
    } else {
        let _ = ROCKS_ACCUM.insert(&owner, &bytes, 0);
    }
}

/// Takes the payload accumulated by the transaction or batch `owner`, which ends here: a
/// committed transaction may be reused by `optimistictransaction_begin(old_txn)`, a written
/// batch is destroyed or cleared. (A batch written twice without a clear reports, the second
/// time, only what was added since the first write.) Read at entry: nothing is added to an
/// owner while it is being committed or written.
#[inline(always)]
fn take_accumulated(owner: u64) -> u64 {
    let Some(&bytes) = (unsafe { ROCKS_ACCUM.get(&owner) }) else {
        return 0;
    };
    let _ = ROCKS_ACCUM.remove(&owner);
    bytes
}

/// This thread's record of in-flight calls, made on its first traced call.
#[inline(always)]
fn thread_calls(pid_tgid: u64) -> Option<*mut ThreadCalls> {
    if let Some(t) = ROCKS_THREADS.get_ptr_mut(&pid_tgid) {
        return Some(t);
    }
    let zero = ROCKS_ZERO.get(0)?;
    let _ = ROCKS_THREADS.insert(&pid_tgid, zero, BPF_NOEXIST as u64);
    ROCKS_THREADS.get_ptr_mut(&pid_tgid)
}

#[inline(always)]
fn on_enter(ctx: &ProbeContext, fid: u32, bytes: u64, aux: u64) {
    let Some((pid_tgid, cfg)) = target() else {
        return;
    };
    let spec = &TRACED[fid as usize];
    let cf = match spec.cf_arg {
        Some(i) => resolve_cf(arg(ctx, i), cfg.flags),
        None => CF_DEFAULT,
    };
    if cfg.flags & CONFIG_FLAG_ENTRY_ONLY != 0 {
        record_entry(fid, cf, bytes);
        return;
    }
    let errptr = match spec.err_arg {
        Some(i) => arg(ctx, i),
        None => 0,
    };
    let Some(t) = thread_calls(pid_tgid) else {
        bump(counter::STATS_FULL);
        return;
    };
    // SAFETY: `t` is this thread's record; no other thread touches it, and a thread runs one
    // of these programs at a time (uprobes fire in user mode only).
    unsafe {
        let mut d = opaque((*t).depth as u64);
        if d >= INFLIGHT_MAX as u64 {
            // Full: calls whose returns never came (a thread id reused after a thread died
            // mid-call), or nesting too deep; their returns, if any, count as unpaired.
            d = 0;
        }
        (*t).calls[d as usize] = Entry {
            fn_id: fid,
            _pad: 0,
            start_ns: bpf_ktime_get_ns(),
            cf,
            bytes,
            aux,
            errptr,
        };
        (*t).depth = d as u32 + 1;
    }
}

/// Pops the innermost in-flight call of `fid` off this thread's record. Calls above it
/// whose returns never came (none are expected: uretprobes return in order) are dropped.
#[inline(always)]
fn pop_entry(pid_tgid: u64, fid: u32) -> Option<Entry> {
    let t = ROCKS_THREADS.get_ptr_mut(&pid_tgid)?;
    // SAFETY: as in `on_enter`.
    unsafe {
        let depth = (*t).depth as usize;
        let mut i = INFLIGHT_MAX;
        while i > 0 {
            i -= 1;
            if i < depth && (*t).calls[i].fn_id == fid {
                (*t).depth = i as u32;
                return Some((*t).calls[i]);
            }
        }
    }
    None
}

#[inline(always)]
fn on_exit(ctx: &RetProbeContext, fid: u32) {
    let Some((pid_tgid, cfg)) = target() else {
        return;
    };
    let end = unsafe { bpf_ktime_get_ns() };
    let Some(e) = pop_entry(pid_tgid, fid) else {
        bump(counter::UNPAIRED);
        return;
    };
    let latency = end.saturating_sub(e.start_ns);
    let spec = &TRACED[fid as usize];

    let error = e.errptr != 0 && read_u64(e.errptr) != 0;
    let ret: u64 = ctx.ret();
    let (mut hit, mut miss, mut bytes) = (false, false, e.bytes);
    match spec.result {
        Result_::PinnableSlice if !error => {
            hit = ret != 0;
            miss = ret == 0;
            // PinnableSlice derives from Slice { const char* data_; size_t size_; }.
            bytes = if hit { read_u64(ret + 8) } else { 0 };
        }
        Result_::ValueWithLen if !error => {
            hit = ret != 0;
            miss = ret == 0;
            bytes = if hit { read_u64(e.aux) } else { 0 };
        }
        Result_::PinnableSlice | Result_::ValueWithLen => bytes = 0,
        Result_::Plain => {}
    }
    record(fid, e.cf, latency, bytes, error, hit, miss);

    if latency >= cfg.slow_threshold_ns {
        match ROCKS_EVENTS.reserve::<SlowEvent>(0) {
            Some(mut slot) => {
                let flags = (error as u32) * SLOW_FLAG_ERROR
                    | (hit as u32) * SLOW_FLAG_HIT
                    | (miss as u32) * SLOW_FLAG_MISS;
                slot.write(SlowEvent {
                    kind: EVENT_SLOW_OP,
                    fn_id: fid,
                    tid: pid_tgid as u32,
                    flags,
                    end_ns: end,
                    latency_ns: latency,
                    bytes,
                    cf: e.cf,
                });
                slot.submit(0);
            }
            None => bump(counter::RING_DROPS),
        }
    }
}

/// Entry-only mode: the call and the bytes known at entry.
#[inline(always)]
fn record_entry(fid: u32, cf: u64, bytes: u64) {
    if let Some(s) = ROCKS_STATS.get_ptr_mut(stats_index(fid, cf)) {
        // SAFETY: `s` points to this CPU's row of (fid, cf).
        unsafe {
            add(&raw mut (*s).count, 1);
            if bytes != 0 {
                add(&raw mut (*s).bytes, bytes);
            }
        }
    }
}

#[inline(always)]
fn record(fid: u32, cf: u64, latency: u64, bytes: u64, error: bool, hit: bool, miss: bool) {
    if let Some(s) = ROCKS_STATS.get_ptr_mut(stats_index(fid, cf)) {
        // SAFETY: `s` points to this CPU's row of (fid, cf).
        unsafe {
            add(&raw mut (*s).count, 1);
            add(&raw mut (*s).total_ns, latency);
            if bytes != 0 {
                add(&raw mut (*s).bytes, bytes);
            }
            if error {
                add(&raw mut (*s).errors, 1);
            }
            if hit {
                add(&raw mut (*s).hits, 1);
            }
            if miss {
                add(&raw mut (*s).misses, 1);
            }
            // Racy max: two threads preempting each other on one CPU may lose a max; counts are exact.
            if latency > (*s).max_ns {
                (*s).max_ns = latency;
            }
        }
    }
    if let Some(h) = ROCKS_HIST.get_ptr_mut(fid) {
        let idx = opaque(bucket_of(latency) as u64);
        if idx < BUCKETS as u64 {
            // SAFETY: bounds checked above; `h` is this CPU's histogram of `fid`.
            add(unsafe { &raw mut (*h)[idx as usize] }, 1);
        }
    }
}

/// Defines the uprobe/uretprobe pair of one function. `$extra` computes `(bytes, aux)` from
/// the entry arguments: payload size, and the pointer the return needs.
macro_rules! pair {
    ($enter:ident, $exit:ident, $fid:expr, |$ctx:ident| $extra:expr) => {
        #[uprobe]
        pub fn $enter(ctx: ProbeContext) -> u32 {
            let $ctx = &ctx;
            let (bytes, aux): (u64, u64) = $extra;
            on_enter(&ctx, $fid, bytes, aux);
            0
        }

        #[uretprobe]
        pub fn $exit(ctx: RetProbeContext) -> u32 {
            on_exit(&ctx, $fid);
            0
        }
    };
}

/// Entry of a write into an open transaction or batch: counts its payload toward the owner.
#[inline(always)]
fn owned_write(ctx: &ProbeContext, owner_arg: u8, bytes: u64) -> (u64, u64) {
    if target().is_some() {
        accumulate(arg(ctx, owner_arg), bytes);
    }
    (bytes, 0)
}

/// Entry of a commit or write of the transaction or batch in argument `owner_arg`.
#[inline(always)]
fn owner_ends(ctx: &ProbeContext, owner_arg: u8) -> (u64, u64) {
    if target().is_none() {
        return (0, 0);
    }
    (take_accumulated(arg(ctx, owner_arg)), 0)
}

// GET: the value length comes on return.
pair!(
    get_pinned_cf_enter,
    get_pinned_cf_exit,
    f::GET_PINNED_CF,
    |_c| (0, 0)
);
pair!(
    txn_get_pinned_cf_enter,
    txn_get_pinned_cf_exit,
    f::TXN_GET_PINNED_CF,
    |_c| (0, 0)
);
// (txn, ro, cf, key, klen, vlen*, exclusive, errptr)
pair!(
    txn_get_for_update_cf_enter,
    txn_get_for_update_cf_exit,
    f::TXN_GET_FOR_UPDATE_CF,
    |c| (0, arg(c, 5))
);
pair!(get_pinned_enter, get_pinned_exit, f::GET_PINNED, |_c| (
    0, 0
));
// (db, ro, key, klen, vlen*, errptr)
pair!(get_enter, get_exit, f::GET, |c| (0, arg(c, 4)));
// (db, ro, cf, key, klen, vlen*, errptr)
pair!(get_cf_enter, get_cf_exit, f::GET_CF, |c| (0, arg(c, 5)));

// PUT: key + value length from the arguments.
// (txn, cf, key, klen, val, vlen, errptr)
pair!(txn_put_cf_enter, txn_put_cf_exit, f::TXN_PUT_CF, |c| {
    owned_write(c, 0, arg(c, 3) + arg(c, 5))
});
// (db, wo, key, klen, val, vlen, errptr)
pair!(put_enter, put_exit, f::PUT, |c| (arg(c, 3) + arg(c, 5), 0));
// (db, wo, cf, key, klen, val, vlen, errptr)
pair!(put_cf_enter, put_cf_exit, f::PUT_CF, |c| (
    arg(c, 4) + arg(c, 6),
    0
));
// (batch, cf, key, klen, val, vlen)
pair!(
    batch_put_cf_enter,
    batch_put_cf_exit,
    f::BATCH_PUT_CF,
    |c| owned_write(c, 0, arg(c, 3) + arg(c, 5))
);
// (batch, key, klen, val, vlen)
pair!(batch_put_enter, batch_put_exit, f::BATCH_PUT, |c| {
    owned_write(c, 0, arg(c, 2) + arg(c, 4))
});

// DELETE: no payload of their own, but the key counts toward the owning txn or batch.
// (txn, cf, key, klen, errptr)
pair!(
    txn_delete_cf_enter,
    txn_delete_cf_exit,
    f::TXN_DELETE_CF,
    |c| {
        owned_write(c, 0, arg(c, 3));
        (0, 0)
    }
);
pair!(delete_enter, delete_exit, f::DELETE, |_c| (0, 0));
pair!(delete_cf_enter, delete_cf_exit, f::DELETE_CF, |_c| (0, 0));
// (batch, cf, key, klen)
pair!(
    batch_delete_cf_enter,
    batch_delete_cf_exit,
    f::BATCH_DELETE_CF,
    |c| {
        owned_write(c, 0, arg(c, 3));
        (0, 0)
    }
);
// (batch, key, klen)
pair!(
    batch_delete_enter,
    batch_delete_exit,
    f::BATCH_DELETE,
    |c| {
        owned_write(c, 0, arg(c, 2));
        (0, 0)
    }
);

// WRITE: bytes are the owner's accumulated payload.
// (txn, errptr)
pair!(txn_commit_enter, txn_commit_exit, f::TXN_COMMIT, |c| {
    owner_ends(c, 0)
});
// (db, wo, batch, errptr)
pair!(write_enter, write_exit, f::WRITE, |c| owner_ends(c, 2));

// ITER_SEEK and ITER_NEXT.
pair!(iter_seek_enter, iter_seek_exit, f::ITER_SEEK, |_c| (0, 0));
pair!(
    iter_seek_for_prev_enter,
    iter_seek_for_prev_exit,
    f::ITER_SEEK_FOR_PREV,
    |_c| (0, 0)
);
pair!(
    iter_seek_to_first_enter,
    iter_seek_to_first_exit,
    f::ITER_SEEK_TO_FIRST,
    |_c| (0, 0)
);
pair!(
    iter_seek_to_last_enter,
    iter_seek_to_last_exit,
    f::ITER_SEEK_TO_LAST,
    |_c| (0, 0)
);
pair!(iter_next_enter, iter_next_exit, f::ITER_NEXT, |_c| (0, 0));

/// Forgets the accumulated bytes of a transaction or batch that ends without a write.
#[inline(always)]
fn forget(ctx: &ProbeContext) -> u32 {
    if target().is_some() {
        let _ = ROCKS_ACCUM.remove(&arg(ctx, 0));
    }
    0
}

#[uprobe]
pub fn txn_forget(ctx: ProbeContext) -> u32 {
    forget(&ctx)
}

#[uprobe]
pub fn txn_forget_rollback(ctx: ProbeContext) -> u32 {
    forget(&ctx)
}

#[uprobe]
pub fn batch_forget_clear(ctx: ProbeContext) -> u32 {
    forget(&ctx)
}
