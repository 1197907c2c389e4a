//! Types shared by ckb-probe's kernel programs (`ckb-probe-ebpf`) and its user-space side.
//!
//! Everything that crosses the kernel/user boundary (map keys and values, ring-buffer records,
//! the run-time configuration, histogram bucketing) is defined here once, `#[repr(C)]`, so that
//! both sides agree on layout by construction.
#![no_std]

pub mod config;
pub mod hist;
pub mod net;
pub mod rocksdb;
pub mod syscall;

/// Per-thread state in the kernel lives in direct-mapped arrays, slot `tid % THREAD_SLOTS`,
/// owned by the first thread that claims it, with a hash map for the threads whose slot another
/// owns. An array lookup is a few instructions the verifier inlines, while a hash-map lookup
/// costs about 100 ns on the reference VM, and the hot paths would pay it on every call. A node's
/// threads have nearby tids, so they rarely share a slot. A power of two.
pub const THREAD_SLOTS: u32 = 4_096;

/// The slot of thread `pid_tgid` (its tid, the low half) in a `THREAD_SLOTS` array.
#[inline(always)]
pub const fn thread_slot_index(pid_tgid: u64) -> u32 {
    pid_tgid as u32 & (THREAD_SLOTS - 1)
}

/// Implements `aya::Pod` for plain-old-data types on the user side only.
#[macro_export]
#[doc(hidden)]
macro_rules! user_pod {
    ($($t:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: `#[repr(C)]`, only integer fields and explicit padding: every bit pattern is valid.
            unsafe impl aya::Pod for $t {}
        )*
    };
}
