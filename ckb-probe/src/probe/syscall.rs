//! Attaching the syscall layer: raw tracepoints on `sys_enter` and `sys_exit`. They fire for
//! every process on the machine; the programs keep only the target's tgid (set in `CONFIG`).
//!
//! The kernel programs know no syscall numbers: before attaching, this writes the kind of each
//! number of the running architecture (`SYS_KIND`) and where the futex operation sits in the
//! saved user registers (`SYS_CONF`).

use aya::{
    maps::Array,
    programs::{RawTracePoint, raw_trace_point::RawTracePointLinkId},
};
use ckb_probe_common::syscall::{CONF_ARG1, CONF_NR, KINDS, NR_MAX, SysConf};

use super::{Engine, ProbeError};
use crate::analysis::syscall_names::SyscallTable;

/// Kernel program names and the raw tracepoints they attach to, in attach order: entries
/// first, so that the only unpaired exits are calls already in flight at attach time.
pub const PROGRAMS: [(&str, &str); 2] =
    [("syscall_enter", "sys_enter"), ("syscall_exit", "sys_exit")];

/// What was attached.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SysAttach {
    /// Architecture whose syscall table names the numbers (`None`: numbers shown as `sys_N`).
    pub arch: Option<&'static str>,
    pub programs: Vec<&'static str>,
    /// Whether futex waits can be told from wakes on this architecture.
    pub futex_waits: bool,
}

/// Offset of the second syscall argument in the `struct pt_regs` that `sys_enter` receives.
/// The kernel's x86-64 `pt_regs` and arm64 `user_pt_regs` (which starts arm64's `pt_regs`)
/// have the layout of ptrace's `user_regs_struct` up to these fields.
fn arg1_offset() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    return Some(std::mem::offset_of!(libc::user_regs_struct, rsi) as u32);
    #[cfg(target_arch = "aarch64")]
    return Some((std::mem::offset_of!(libc::user_regs_struct, regs) + 8) as u32);
    #[allow(unreachable_code)]
    None
}

/// Offset of the syscall number in the `struct pt_regs` that `sys_exit` receives: x86-64's
/// `orig_ax` (ptrace's `orig_rax`); arm64's `syscallno`, after `user_pt_regs` (34 u64) and
/// `orig_x0`.
fn nr_offset() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    return Some(std::mem::offset_of!(libc::user_regs_struct, orig_rax) as u32);
    #[cfg(target_arch = "aarch64")]
    return Some(35 * 8);
    #[allow(unreachable_code)]
    None
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |e| ProbeError::Map {
        name,
        source: Some(e),
    }
}

/// Writes the architecture's syscall kinds and argument layout for the kernel programs.
fn configure(engine: &mut Engine, table: Option<&SyscallTable>) -> Result<bool, ProbeError> {
    let map = engine.ebpf.map_mut("SYS_KIND").ok_or(ProbeError::Map {
        name: "SYS_KIND",
        source: None,
    })?;
    let mut kinds: Array<_, u32> = Array::try_from(map).map_err(map_err("SYS_KIND"))?;
    if let Some(t) = table {
        for (name, kind) in KINDS {
            if let Some(nr) = t.nr(name).filter(|&nr| nr < NR_MAX) {
                kinds.set(nr, kind, 0).map_err(map_err("SYS_KIND"))?;
            }
        }
    }
    let offset = arg1_offset();
    let nr_off = nr_offset();
    let map = engine.ebpf.map_mut("SYS_CONF").ok_or(ProbeError::Map {
        name: "SYS_CONF",
        source: None,
    })?;
    let mut conf: Array<_, SysConf> = Array::try_from(map).map_err(map_err("SYS_CONF"))?;
    conf.set(
        0,
        SysConf {
            arg1_offset: offset.unwrap_or(0),
            nr_offset: nr_off.unwrap_or(0),
            flags: if offset.is_some() { CONF_ARG1 } else { 0 }
                | if nr_off.is_some() { CONF_NR } else { 0 },
            _pad: 0,
        },
        0,
    )
    .map_err(map_err("SYS_CONF"))?;
    Ok(offset.is_some() && table.is_some())
}

fn program<'a>(engine: &'a mut Engine, name: &str) -> Result<&'a mut RawTracePoint, ProbeError> {
    engine
        .ebpf
        .program_mut(name)
        .ok_or(ProbeError::Map {
            name: "program missing from the eBPF object",
            source: None,
        })?
        .try_into()
        .map_err(|source| ProbeError::Program {
            name: name.to_string(),
            source,
        })
}

fn attach_one(
    engine: &mut Engine,
    name: &str,
    tracepoint: &str,
) -> Result<RawTracePointLinkId, ProbeError> {
    let err = |source| ProbeError::Program {
        name: name.to_string(),
        source,
    };
    let prog = program(engine, name)?;
    if prog.fd().is_err() {
        prog.load().map_err(err)?;
    }
    prog.attach(tracepoint).map_err(err)
}

/// Attaches the layer to the process whose tgid the engine's `CONFIG` holds. Collect with a
/// [`crate::collect::syscall::SysCollector`] created from the same engine.
pub fn attach(engine: &mut Engine) -> Result<SysAttach, ProbeError> {
    let table = SyscallTable::host();
    let futex_waits = configure(engine, table.as_ref())?;
    let mut links: Vec<(&str, RawTracePointLinkId)> = Vec::new();
    for (name, tracepoint) in PROGRAMS {
        match attach_one(engine, name, tracepoint) {
            Ok(link) => links.push((name, link)),
            Err(e) => {
                // Half a layer would only count unpaired calls: take the other half off too.
                for (done, link) in links {
                    if let Ok(p) = program(engine, done) {
                        let _ = p.detach(link);
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(SysAttach {
        arch: table.map(|t| t.arch),
        programs: PROGRAMS.iter().map(|p| p.0).collect(),
        futex_waits,
    })
}
