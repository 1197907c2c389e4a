//! Small helpers every layer's programs use.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_probe_read_user, maps::HashMap};

/// Adds to a per-CPU slot atomically: a uprobe program runs with migration disabled but may be
/// preempted on this CPU by another thread running the same program, and exact counts are the
/// point. The BPF target has no `AtomicU64::fetch_add` in core (no CAS), so this is the BPF
/// `lock xadd` instruction itself.
#[inline(always)]
pub fn add(slot: *mut u64, v: u64) {
    // SAFETY: `slot` points into a map value that lives as long as the map.
    unsafe {
        core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) slot, in(reg) v, options(nostack));
    }
}

/// Returns `v` unchanged, but LLVM cannot see through it, so a bounds check on the result is
/// kept for the verifier even where LLVM could prove it redundant from earlier code the
/// verifier cannot follow (popcount-based leading_zeros, folded range checks).
#[inline(always)]
pub fn opaque(mut v: u64) -> u64 {
    // SAFETY: a register move onto itself.
    unsafe {
        core::arch::asm!("{0} = {0}", inout(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

#[inline(always)]
pub fn read_u64(addr: u64) -> u64 {
    // SAFETY: bpf_probe_read_user checks the address; a fault yields Err.
    unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
}

/// Whether `me` owns the direct-mapped slot `idx` whose owner word is `owner` (see
/// `ckb_probe_common::THREAD_SLOTS`), claiming it when `claim` and it is free.
///
/// `claims` arbitrates: a map insert with `BPF_NOEXIST` is atomic, so of two claimants of one
/// free slot exactly one wins, and only the winner writes the owner word. (BPF's own
/// compare-and-swap would do without the map but needs Linux 5.12; ckb-probe runs on 5.8.) A
/// claim costs one locked map update, once per slot, never per call: slots are not given back.
/// So a slot just claimed holds what its map was created with, zeroes: only an owner writes
/// a slot's other fields.
#[inline(always)]
pub fn own_slot(
    owner: *mut u64,
    claims: &HashMap<u32, u64>,
    idx: u32,
    me: u64,
    claim: bool,
) -> bool {
    // SAFETY: `owner` points into a map value; an aligned 8-byte load is never torn.
    let held = unsafe { core::ptr::read_volatile(owner) };
    if held == me {
        return true;
    }
    if claim && held == 0 && claims.insert(&idx, &me, BPF_NOEXIST as u64).is_ok() {
        // SAFETY: as above; only the claim's winner writes here.
        unsafe { core::ptr::write_volatile(owner, me) };
        return true;
    }
    false
}
