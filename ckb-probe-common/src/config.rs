//! Run-time configuration written by user space into the `CONFIG` array map (index 0).

/// Configuration read by every program on each event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Only events from this process (kernel tgid) are recorded; 0 disables every program.
    pub tgid: u32,
    /// `CONFIG_FLAG_*` bits.
    pub flags: u32,
    /// Operations at least this slow are sent individually through the ring buffer.
    /// `u64::MAX` disables the slow log.
    pub slow_threshold_ns: u64,
}

/// Resolve column-family handles to families (pointer chase into RocksDB's objects).
pub const CONFIG_FLAG_CF: u32 = 1 << 0;
/// RocksDB lightweight mode: entry programs record calls and the bytes known at entry
/// themselves (no return probe is attached, so no latency, outcome or slow events).
pub const CONFIG_FLAG_ENTRY_ONLY: u32 = 1 << 1;

crate::user_pod!(Config);
