//! The floor of the overhead benchmark (`cargo bench --bench overhead`): a uprobe and a
//! uretprobe that do nothing, attached where the RocksDB layer attaches. What any uprobe tool
//! pays per traced call on these sites before its programs do any work; no command loads them.

use aya_ebpf::{
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};

#[uprobe]
pub fn floor_enter(_ctx: ProbeContext) -> u32 {
    0
}

#[uretprobe]
pub fn floor_exit(_ctx: RetProbeContext) -> u32 {
    0
}
