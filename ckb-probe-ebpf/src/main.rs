//! ckb-probe's kernel programs: one module per layer.
#![no_std]
#![no_main]
// For the BPF atomic-add instruction (see rocksdb::add).
#![feature(asm_experimental_arch)]

mod floor;
mod net;
mod rocksdb;
mod syscall;
mod util;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves there is no reachable panic; this only satisfies the linker.
    loop {}
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::Array};
use ckb_probe_common::config::Config;

/// Run-time configuration shared by every layer (index 0).
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// `(pid_tgid, config)` when the current task belongs to the traced process, else `None`.
/// Filtering here, in the kernel, keeps other processes that map the same file out of the data.
#[inline(always)]
fn target() -> Option<(u64, &'static Config)> {
    let cfg = CONFIG.get(0)?;
    let pid_tgid = bpf_get_current_pid_tgid();
    if cfg.tgid == 0 || (pid_tgid >> 32) as u32 != cfg.tgid {
        return None;
    }
    Some((pid_tgid, cfg))
}
