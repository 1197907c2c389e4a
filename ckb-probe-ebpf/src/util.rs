//! Small helpers every layer's programs use.

use aya_ebpf::helpers::bpf_probe_read_user;

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
