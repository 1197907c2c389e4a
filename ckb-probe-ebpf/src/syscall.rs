//! Syscall layer: raw tracepoints on `sys_enter` and `sys_exit`, filtered by tgid first thing
//! (they fire for every system call on the machine).
//!
//! Entry writes the thread's in-flight slot (number, start time, whether the call waits);
//! exit closes it, classifies the thread by name into a role, and updates the per-CPU
//! aggregates per (number, role), the number's latency histogram and, for I/O calls, a
//! histogram per (number, role).

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{map, raw_tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::RawTracePointContext,
};
use ckb_probe_common::{
    hist::{BUCKETS, Histogram, bucket_of},
    syscall::{
        CONF_ARG1, CONF_NR, HIST_MAX, INFLIGHT_MAX, INFLIGHT_WAIT, InFlight, NR_MAX, ROLE_HIST_MAX,
        STATS_MAX, SysConf, SysKey, SysStats, comm_words, counter, futex_op_waits, kind,
        role_of_words,
    },
};

use ckb_probe_common::{THREAD_SLOTS, thread_slot_index};

use crate::{
    target,
    util::{add, opaque, own_slot},
};

/// This thread's in-flight record, if it has one (with `claim`: its slot, if it can take it).
#[inline(always)]
fn inflight(pid_tgid: u64, claim: bool) -> Option<*mut InFlight> {
    let idx = thread_slot_index(pid_tgid);
    if let Some(s) = SYS_SLOTS.get_ptr_mut(idx)
        // SAFETY: `s` points into the array.
        && own_slot(unsafe { &raw mut (*s).owner }, &SYS_SLOT_CLAIMS, idx, pid_tgid, claim)
    {
        return Some(s);
    }
    SYS_INFLIGHT.get_ptr_mut(pid_tgid)
}

/// One slot per thread, reused call after call (no insert/delete per syscall): slot
/// `tid % THREAD_SLOTS` once the thread owns it, else its entry in `SYS_INFLIGHT` (an LRU, so
/// that entries of dead threads are reclaimed).
#[map]
static SYS_SLOTS: Array<InFlight> = Array::with_max_entries(THREAD_SLOTS, 0);
/// Who claimed which slot of `SYS_SLOTS` (see `util::own_slot`).
#[map]
static SYS_SLOT_CLAIMS: HashMap<u32, u64> = HashMap::with_max_entries(THREAD_SLOTS, 0);
#[map]
static SYS_INFLIGHT: LruHashMap<u64, InFlight> = LruHashMap::with_max_entries(INFLIGHT_MAX, 0);
/// `kind::*` bits per syscall number, written by user space for the running architecture.
#[map]
static SYS_KIND: Array<u32> = Array::with_max_entries(NR_MAX, 0);
#[map]
static SYS_CONF: Array<SysConf> = Array::with_max_entries(1, 0);
/// The per-CPU maps below are allocated per key on first use, not up front: every layer's maps
/// are created whichever layers run, and a preallocated per-CPU map costs its full capacity
/// times the CPU count (a histogram is 2 KiB per CPU).
#[map]
static SYS_STATS: PerCpuHashMap<SysKey, SysStats> =
    PerCpuHashMap::with_max_entries(STATS_MAX, BPF_F_NO_PREALLOC);
#[map]
static SYS_HIST: PerCpuHashMap<u32, Histogram> =
    PerCpuHashMap::with_max_entries(HIST_MAX, BPF_F_NO_PREALLOC);
#[map]
static SYS_ROLE_HIST: PerCpuHashMap<SysKey, Histogram> =
    PerCpuHashMap::with_max_entries(ROLE_HIST_MAX, BPF_F_NO_PREALLOC);
/// Never written: the zeroed value new histograms are created from (a histogram does not fit
/// the 512-byte BPF stack).
#[map]
static SYS_ZERO: Array<Histogram> = Array::with_max_entries(1, 0);
#[map]
static SYS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = SYS_COUNTERS.get_ptr_mut(idx) {
        add(p, 1);
    }
}

#[inline(always)]
fn kind_of(nr: u32) -> u32 {
    SYS_KIND.get(nr).copied().unwrap_or(0)
}

#[inline(always)]
fn current_role() -> u32 {
    match bpf_get_current_comm() {
        Ok(comm) => {
            let (w0, w1) = comm_words(&comm);
            role_of_words(w0, w1)
        }
        Err(_) => 0,
    }
}

/// Whether the futex call entering now waits: its operation is the second argument, read from
/// the user registers `sys_enter` receives (arg 0) at the offset user space gave for this
/// architecture.
#[inline(always)]
fn futex_waits(ctx: &RawTracePointContext) -> bool {
    let Some(conf) = SYS_CONF.get(0) else {
        return false;
    };
    if conf.flags & CONF_ARG1 == 0 {
        return false;
    }
    let regs: u64 = ctx.arg(0);
    // SAFETY: a checked read of kernel memory; a fault yields Err.
    match unsafe { bpf_probe_read_kernel((regs + conf.arg1_offset as u64) as *const u64) } {
        Ok(op) => futex_op_waits(op),
        Err(_) => false,
    }
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn syscall_enter(ctx: RawTracePointContext) -> i32 {
    let Some((pid_tgid, _)) = target() else {
        return 0;
    };
    let nr: i64 = ctx.arg(1);
    if !(0..=u32::MAX as i64).contains(&nr) {
        return 0;
    }
    let nr = nr as u32;
    let k = kind_of(nr);
    if k & kind::NO_RETURN != 0 {
        // The thread (or process) ends inside the call: count it now, with no latency.
        record(nr, current_role(), k, 0, 0, false, false);
        return 0;
    }
    let waits = k & kind::ALWAYS_WAITS != 0 || (k & kind::FUTEX != 0 && futex_waits(&ctx));
    let flags = if waits { INFLIGHT_WAIT } else { 0 };
    // Last, so that the map work above is not part of the measured latency.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(slot) = inflight(pid_tgid, true) {
        // SAFETY: the slot is this thread's own value; only this thread writes it.
        unsafe {
            (*slot).start_ns = now;
            (*slot).nr = nr;
            (*slot).flags = flags;
        }
    } else {
        let entry = InFlight {
            owner: 0,
            start_ns: now,
            nr,
            flags,
        };
        let _ = SYS_INFLIGHT.insert(pid_tgid, entry, 0);
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn syscall_exit(ctx: RawTracePointContext) -> i32 {
    let Some((pid_tgid, _)) = target() else {
        return 0;
    };
    let end = unsafe { bpf_ktime_get_ns() };
    let ret: i64 = ctx.arg(1);
    let Some(slot) = inflight(pid_tgid, false) else {
        unpaired(&ctx, ret);
        return 0;
    };
    // SAFETY: the slot is this thread's own value.
    let e = unsafe { *slot };
    if e.start_ns == 0 {
        unpaired(&ctx, ret);
        return 0;
    }
    unsafe { (*slot).start_ns = 0 };
    let latency = end.saturating_sub(e.start_ns);
    let k = kind_of(e.nr);
    let ret_sum = if k & kind::RET_SUM != 0 && ret > 0 {
        ret as u64
    } else {
        0
    };
    let error = (-4095..0).contains(&ret);
    record(
        e.nr,
        current_role(),
        k,
        latency,
        ret_sum,
        error,
        e.flags & INFLIGHT_WAIT != 0,
    );
    0
}

/// An exit without an entry: a new task's first return from a fork-like call (it starts
/// life returning 0 from a call its parent entered), or a call in flight at attach time.
#[inline(always)]
fn unpaired(ctx: &RawTracePointContext, ret: i64) {
    if ret == 0
        && let Some(conf) = SYS_CONF.get(0)
        && conf.flags & CONF_NR != 0
    {
        let regs: u64 = ctx.arg(0);
        // SAFETY: a checked read of kernel memory; a fault yields Err.
        let nr = unsafe { bpf_probe_read_kernel((regs + conf.nr_offset as u64) as *const u64) };
        if let Ok(nr) = nr
            && kind_of(nr as u32) & kind::FORK != 0
        {
            bump(counter::CHILD_STARTS);
            return;
        }
    }
    bump(counter::UNPAIRED);
}

#[inline(always)]
fn record(nr: u32, role: u32, k: u32, latency: u64, ret_sum: u64, error: bool, waited: bool) {
    let key = SysKey { nr, role };
    let mut p = SYS_STATS.get_ptr_mut(key);
    if p.is_none() {
        let _ = SYS_STATS.insert(key, SysStats::default(), BPF_NOEXIST as u64);
        p = SYS_STATS.get_ptr_mut(key);
    }
    let Some(s) = p else {
        bump(counter::STATS_FULL);
        return;
    };
    // SAFETY: `s` points to this CPU's value for `key`.
    unsafe {
        add(&raw mut (*s).count, 1);
        add(&raw mut (*s).total_ns, latency);
        if ret_sum != 0 {
            add(&raw mut (*s).ret_sum, ret_sum);
        }
        if error {
            add(&raw mut (*s).errors, 1);
        }
        if waited {
            add(&raw mut (*s).waits, 1);
            add(&raw mut (*s).wait_ns, latency);
        }
        // Racy max: two threads preempting each other on one CPU may lose a max; counts are exact.
        if latency > (*s).max_ns {
            (*s).max_ns = latency;
        }
    }
    if k & kind::NO_RETURN != 0 {
        return;
    }
    let idx = bucket_of(latency) as u64;
    if !hist_add(&SYS_HIST, nr, idx) {
        bump(counter::HIST_FULL);
    }
    if k & kind::ROLE_HIST != 0 && !hist_add(&SYS_ROLE_HIST, key, idx) {
        bump(counter::HIST_FULL);
    }
}

/// Adds one to bucket `idx` of `key`'s histogram, creating it from the zero value on first
/// use. False when the map is full (or allocation failed).
#[inline(always)]
fn hist_add<K>(map: &PerCpuHashMap<K, Histogram>, key: K, idx: u64) -> bool {
    // Checked after `opaque`, right where it is used, so the verifier sees the bound.
    let idx = opaque(idx);
    if idx >= BUCKETS as u64 {
        return true;
    }
    let mut h = map.get_ptr_mut(&key);
    if h.is_none() {
        let Some(zero) = SYS_ZERO.get(0) else {
            return false;
        };
        let _ = map.insert(&key, zero, BPF_NOEXIST as u64);
        h = map.get_ptr_mut(&key);
    }
    match h {
        Some(h) => {
            // SAFETY: `idx < BUCKETS` (checked above); `h` is this CPU's histogram of `key`.
            add(unsafe { &raw mut (*h)[idx as usize] }, 1);
            true
        }
        None => false,
    }
}
