//! RocksDB layer: a uprobe/uretprobe pair per traced C API function.
//!
//! Entry saves the start time and what only the arguments tell (column family, sizes, output
//! pointers) on its thread's stack of in-flight calls; return pops it, reads the outcome, then
//! updates per-CPU aggregates, the function's latency histogram and, above the threshold, the
//! slow-event ring. In entry-only mode the entry records the call itself and no return probe
//! is attached.
//!
//! The hot path makes no map update and, in the common case, no hash-map lookup: hash-map
//! updates take a bucket spin lock with interrupts off (several hundred ns each on a VM) and
//! even a lock-free hash lookup costs about 100 ns there. Per call it finds its thread's record,
//! the column family and the open transaction's byte count in direct-mapped arrays (slots
//! claimed with compare-and-swap), updates per-CPU arrays in place, and falls back to the hash
//! maps only when a slot belongs to someone else.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext},
};
use ckb_probe_common::{
    config::{CONFIG_FLAG_CF, CONFIG_FLAG_ENTRY_ONLY},
    hist::{BUCKETS, Histogram, bucket_of},
    rocksdb::{
        ACCUM_MAX, ACCUM_SLOTS, AccumSlot, CF_CACHE_LEN, CF_DEFAULT, CF_ID_INVALID, CF_MAX,
        CF_NAME_MAX, CF_UNKNOWN, CfInfo, EVENT_SLOW_OP, Entry, FN_COUNT, INFLIGHT_MAX, OpStats,
        RING_BYTES, Result_, SLOW_FLAG_ERROR, SLOW_FLAG_HIT, SLOW_FLAG_MISS, STATS_LEN, SlowEvent,
        THREADS_MAX, TRACED, ThreadCalls, cf_slot, counter, fn_id as f, stats_index,
    },
};

use ckb_probe_common::{THREAD_SLOTS, thread_slot_index};

use crate::{
    target,
    util::{add, opaque, own_slot, read_u64},
};

/// Each thread's in-flight calls, in slot `tid % THREAD_SLOTS` once the thread owns it.
/// Mmapable only for the layout: its values then start on a page, so each 256-byte record
/// starts on a cache line (nothing maps it).
#[map]
static ROCKS_THREAD_SLOTS: Array<ThreadCalls> =
    Array::with_max_entries(THREAD_SLOTS, BPF_F_MMAPABLE);
/// Who claimed which slot of `ROCKS_THREAD_SLOTS` (see `util::own_slot`).
#[map]
static ROCKS_THREAD_CLAIMS: HashMap<u32, u64> = HashMap::with_max_entries(THREAD_SLOTS, 0);
/// The in-flight calls of threads whose slot another thread owns, keyed by pid_tgid (LRU:
/// threads come and go).
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
/// Every column-family handle seen, with its family (user space reads the names here).
#[map]
static ROCKS_CF: LruHashMap<u64, CfInfo> = LruHashMap::with_max_entries(CF_MAX, 0);
/// The slots of recently used handles: `handle | slot << CF_CACHE_SLOT_SHIFT`.
#[map]
static ROCKS_CF_CACHE: Array<u64> = Array::with_max_entries(CF_CACHE_LEN, 0);
/// Payload bytes accumulated per open transaction or write batch, in slot
/// `(pointer >> 4) % ACCUM_SLOTS` once it owns it.
#[map]
static ROCKS_ACCUM_SLOTS: Array<AccumSlot> = Array::with_max_entries(ACCUM_SLOTS, 0);
#[map]
static ROCKS_ACCUM_CLAIMS: HashMap<u32, u64> = HashMap::with_max_entries(ACCUM_SLOTS, 0);
/// The same for transactions and batches whose slot another owns, keyed by pointer. Index 0 of
/// `ROCKS_ACCUM_USED` turns non-zero on its first insert, so until then ending a transaction
/// costs no lookup here.
#[map]
static ROCKS_ACCUM: LruHashMap<u64, u64> = LruHashMap::with_max_entries(ACCUM_MAX, 0);
#[map]
static ROCKS_ACCUM_USED: Array<u64> = Array::with_max_entries(1, 0);
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

/// How far %rsp has moved down where function `fid`'s entry program is attached: 0 on its first
/// instruction, more when an entry-only probe sits past `sub $n,%rsp` or pushes (user space
/// sets it with the site, `symbols::EntrySite::sp_delta`).
#[map]
static ROCKS_SP_DELTA: Array<u32> = Array::with_max_entries(FN_COUNT as u32, 0);

/// Argument `n` (zero-based) of the probed function at its first instruction, System V x86-64
/// ABI: the first six in registers, the rest on the stack above the return address. For a
/// stack argument of a program that may sit further into the prologue, use [`arg_at`].
#[inline(always)]
fn arg(ctx: &ProbeContext, n: u8) -> u64 {
    if n < 6 {
        return ctx.arg::<u64>(n as usize).unwrap_or(0);
    }
    stack_arg(ctx, n, 0)
}

/// Argument `n` of function `fid` wherever its entry program sits. Registers are read as they
/// are: a site is only chosen before the program's argument registers are overwritten.
#[inline(always)]
fn arg_at(ctx: &ProbeContext, fid: u32, n: u8) -> u64 {
    if n < 6 {
        return arg(ctx, n);
    }
    let delta = ROCKS_SP_DELTA.get(fid).copied().unwrap_or(0);
    stack_arg(ctx, n, delta as u64)
}

#[inline(always)]
fn stack_arg(ctx: &ProbeContext, n: u8, sp_delta: u64) -> u64 {
    // SAFETY: ctx.regs is the kernel-provided pt_regs of this probe hit.
    let sp = unsafe { (*ctx.regs).rsp };
    read_u64(sp + sp_delta + 8 * (n as u64 - 5))
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

const CF_CACHE_SLOT_SHIFT: u64 = 48;
const ADDR_MASK: u64 = (1 << CF_CACHE_SLOT_SHIFT) - 1;

/// Index of a heap pointer in a direct-mapped array of `len` slots (malloc aligns to 16).
#[inline(always)]
fn ptr_slot(ptr: u64, len: u32) -> u32 {
    (ptr >> 4) as u32 & (len - 1)
}

/// The column-family slot of `handle`: one array lookup once the handle is cached.
#[inline(always)]
fn resolve_cf(handle: u64, flags: u32) -> u64 {
    if flags & CONFIG_FLAG_CF == 0 || handle == 0 || handle & !ADDR_MASK != 0 {
        return CF_UNKNOWN;
    }
    let cache = ROCKS_CF_CACHE.get_ptr_mut(ptr_slot(handle, CF_CACHE_LEN));
    if let Some(c) = cache {
        // SAFETY: `c` points into the array; one aligned 8-byte load, never torn.
        let v = unsafe { core::ptr::read_volatile(c) };
        // Slots stored here are never 0 (`cf_slot` >= CF_UNKNOWN), so a free entry never matches.
        if v & ADDR_MASK == handle && v >> CF_CACHE_SLOT_SHIFT != 0 {
            return v >> CF_CACHE_SLOT_SHIFT;
        }
    }
    let slot = match unsafe { ROCKS_CF.get(&handle) } {
        Some(info) => cf_slot(info.id),
        None => {
            let info = chase_cf(handle);
            let _ = ROCKS_CF.insert(&handle, &info, 0);
            if info.id == CF_ID_INVALID {
                bump(counter::CF_INVALID);
            }
            cf_slot(info.id)
        }
    };
    if let Some(c) = cache {
        // SAFETY: as above; a concurrent writer stores a whole other valid pair.
        unsafe { core::ptr::write_volatile(c, handle | slot << CF_CACHE_SLOT_SHIFT) };
    }
    slot
}

/// The byte-count slot `owner` holds, claiming it when free.
#[inline(always)]
fn accum_slot(owner: u64, claim: bool) -> Option<*mut AccumSlot> {
    let idx = ptr_slot(owner, ACCUM_SLOTS);
    let s = ROCKS_ACCUM_SLOTS.get_ptr_mut(idx)?;
    // SAFETY: `s` points into the array.
    own_slot(
        unsafe { &raw mut (*s).owner },
        &ROCKS_ACCUM_CLAIMS,
        idx,
        owner,
        claim,
    )
    .then_some(s)
}

/// Adds payload bytes to the open transaction or batch `owner`.
#[inline(always)]
fn accumulate(owner: u64, bytes: u64) {
    if owner == 0 {
        return;
    }
    if let Some(s) = accum_slot(owner, true) {
        add(unsafe { &raw mut (*s).bytes }, bytes);
        return;
    }
    if let Some(p) = ROCKS_ACCUM.get_ptr_mut(&owner) {
        add(p, bytes);
    } else {
        let _ = ROCKS_ACCUM.insert(&owner, &bytes, 0);
        if let Some(used) = ROCKS_ACCUM_USED.get_ptr_mut(0) {
            // SAFETY: index 0 of a one-element array; only ever set to 1.
            unsafe { core::ptr::write_volatile(used, 1) };
        }
    }
}

/// Takes the payload accumulated by the transaction or batch `owner`, which ends here: a
/// committed transaction may be reused by `optimistictransaction_begin(old_txn)`, a written
/// batch is destroyed or cleared. (A batch written twice without a clear reports, the second
/// time, only what was added since the first write.) Read at entry: nothing is added to an
/// owner while it is being committed or written.
///
/// The slot stays the owner's, emptied: the next transaction or batch is usually allocated at
/// the address just freed, and finds its slot without a claim (a map insert and delete per
/// transaction, about 390 ns, otherwise). A slot kept by an address that is not reused only
/// sends the owners that share it to `ROCKS_ACCUM`. Both places are read, as an owner may have
/// been sent there while its slot had another owner.
#[inline(always)]
fn take_accumulated(owner: u64) -> u64 {
    let mut bytes = 0;
    if let Some(s) = accum_slot(owner, false) {
        // SAFETY: the slot is this owner's, and nothing is added to an owner while it ends.
        unsafe {
            bytes = (*s).bytes;
            (*s).bytes = 0;
        }
    }
    let spilled = ROCKS_ACCUM_USED.get(0).copied().unwrap_or(0) != 0;
    if spilled && let Some(&b) = unsafe { ROCKS_ACCUM.get(&owner) } {
        let _ = ROCKS_ACCUM.remove(&owner);
        bytes += b;
    }
    bytes
}

/// This thread's own slot, if it holds it or (with `claim`) can take it.
#[inline(always)]
fn thread_slot(pid_tgid: u64, claim: bool) -> Option<*mut ThreadCalls> {
    let idx = thread_slot_index(pid_tgid);
    let t = ROCKS_THREAD_SLOTS.get_ptr_mut(idx)?;
    // SAFETY: `t` points into the array.
    let own = unsafe { &raw mut (*t).owner };
    own_slot(own, &ROCKS_THREAD_CLAIMS, idx, pid_tgid, claim).then_some(t)
}

/// This thread's record of in-flight calls, made on its first traced call.
#[inline(always)]
fn thread_calls(pid_tgid: u64) -> Option<*mut ThreadCalls> {
    if let Some(t) = thread_slot(pid_tgid, true) {
        return Some(t);
    }
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
        Some(i) => resolve_cf(arg_at(ctx, fid, i), cfg.flags),
        None => CF_DEFAULT,
    };
    if cfg.flags & CONFIG_FLAG_ENTRY_ONLY != 0 {
        record_entry(fid, cf, bytes);
        return;
    }
    let errptr = match spec.err_arg {
        Some(i) => arg_at(ctx, fid, i),
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
    let t = match thread_slot(pid_tgid, false) {
        Some(t) => t,
        None => ROCKS_THREADS.get_ptr_mut(&pid_tgid)?,
    };
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

    let ret: u64 = ctx.ret();
    // A get that returns a value did not fail, so only other calls pay for reading `*errptr`.
    let returned_value = ret != 0 && !matches!(spec.result, Result_::Plain);
    let error = !returned_value && e.errptr != 0 && read_u64(e.errptr) != 0;
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
    arg(c, 4) + arg_at(c, f::PUT_CF, 6),
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
        take_accumulated(arg(ctx, 0));
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

#[uprobe]
pub fn batch_forget_destroy(ctx: ProbeContext) -> u32 {
    forget(&ctx)
}
