//! Attaching the RocksDB layer: a uprobe and a uretprobe per traced C function found in the
//! target, by file offset (CKB keeps `rocksdb_*` only in .symtab, so dynamic-symbol lookup
//! would not find them), scoped to the target process.
//!
//! A function probed on return too has both programs on its first instruction: the kernel
//! hijacks the return address at `[rsp]` there, and one breakpoint serves both. An entry-only
//! program goes to the function's entry site (`Site::entry_offset`), past a single-stepped
//! first instruction when the prologue allows; when that site is past stack adjustments, the
//! program's function gets its `%rsp` offset through [`set_sp_delta`].

use std::{num::NonZeroU32, path::PathBuf};

use aya::{
    maps::Array,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope},
    },
};
use ckb_probe_common::rocksdb::{FORGET, TRACED, fn_id};

use super::{Engine, ProbeError, Uprobes, error_chain};
use crate::symbols::{ProbeCost, RocksDbSites};

/// What was attached where.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RocksAttach {
    pub object: PathBuf,
    /// Traced functions with both probes attached (the entry probe only, in entry-only mode).
    pub attached: Vec<&'static str>,
    /// Traced functions the target does not contain (or that failed to attach, with why).
    pub missing: Vec<(&'static str, String)>,
    /// Attached functions whose first instruction the kernel single-steps (costly per call).
    pub single_stepped: Vec<&'static str>,
    /// How the probes were attached.
    pub uprobes: Uprobes,
}

/// Options of the RocksDB layer.
#[derive(Debug, Clone, Copy)]
pub struct RocksOptions {
    /// Trace `rocksdb_iter_next`: in CKB its first instruction is single-stepped (~14 us a call
    /// on some VMs), so heavy iteration can be turned off.
    pub iter_next: bool,
    /// Entry probes only (lightweight mode): the entry programs count the calls themselves.
    pub entry_only: bool,
}

/// One attached probe, detachable if its partner fails.
enum Link {
    Multi(usize),
    PerfEvent(UProbeLinkId),
}

fn attach_one(
    engine: &mut Engine,
    program: &str,
    offset: u64,
    object: &std::path::Path,
    pid: NonZeroU32,
) -> Result<Link, ProbeError> {
    let multi_err = match engine.attach_multi(program, object, offset, pid.get()) {
        Ok(Some(index)) => return Ok(Link::Multi(index)),
        Ok(None) => None,
        Err(source) if engine.multi_proven() => {
            return Err(ProbeError::Multi {
                name: program.to_string(),
                source,
            });
        }
        // Until one link worked, a refusal may mean a kernel without them: perf-event
        // uprobes decide.
        Err(source) => Some(source),
    };
    let link = attach_perf_event(engine, program, offset, object, pid)?;
    if let Some(e) = multi_err {
        engine.fall_back_to_perf_event(&e);
    }
    Ok(link)
}

fn attach_perf_event(
    engine: &mut Engine,
    program: &str,
    offset: u64,
    object: &std::path::Path,
    pid: NonZeroU32,
) -> Result<Link, ProbeError> {
    let err = |source| ProbeError::Program {
        name: program.to_string(),
        source,
    };
    let prog: &mut UProbe = engine
        .ebpf
        .program_mut(program)
        .ok_or_else(|| ProbeError::Map {
            name: "program missing from the eBPF object",
            source: None,
        })?
        .try_into()
        .map_err(err)?;
    if prog.fd().is_err() {
        prog.load().map_err(err)?;
    }
    prog.attach(
        UProbeAttachLocation::AbsoluteOffset(offset),
        object,
        UProbeScope::OneProcess(pid),
    )
    .map(Link::PerfEvent)
    .map_err(err)
}

/// Detaches a link made by [`attach_one`] (best effort: it is being abandoned anyway).
fn detach_one(engine: &mut Engine, program: &str, link: Link) {
    match link {
        Link::Multi(index) => engine.detach_multi(index),
        Link::PerfEvent(link) => {
            if let Some(p) = engine.ebpf.program_mut(program)
                && let Ok(prog) = <&mut UProbe>::try_from(p)
            {
                let _ = prog.detach(link);
            }
        }
    }
}

/// Attaches every traced function present in `sites` of process `pid`.
pub fn attach(
    engine: &mut Engine,
    sites: &RocksDbSites,
    pid: u32,
    opts: RocksOptions,
) -> Result<RocksAttach, ProbeError> {
    let pid_nz = NonZeroU32::new(pid).ok_or(ProbeError::NothingAttached {
        object: "pid 0".into(),
    })?;
    let mut report = RocksAttach {
        object: sites.display.clone(),
        attached: Vec::new(),
        missing: Vec::new(),
        single_stepped: Vec::new(),
        uprobes: engine.uprobes(),
    };
    for (id, f) in TRACED.iter().enumerate() {
        if id as u32 == fn_id::ITER_NEXT && !opts.iter_next {
            report
                .missing
                .push((f.symbol, "disabled (--no-iter-next)".into()));
            continue;
        }
        let Some(site) = sites.sites.get(f.symbol) else {
            report.missing.push((f.symbol, "not in the target".into()));
            continue;
        };
        let enter = format!("{}_enter", f.stem);
        let exit = format!("{}_exit", f.stem);
        // The return probe first: an entry without a return probe would leave entries behind;
        // a return probe without its entry is removed again (it would count unpaired returns).
        let result = if opts.entry_only {
            // Without a return probe the entry program may sit past a single-stepped first
            // instruction, at the site the prologue walk chose (the entry itself otherwise).
            set_sp_delta(engine, id as u32, site.entry.sp_delta).and_then(|()| {
                attach_one(engine, &enter, site.entry_offset, &sites.object, pid_nz).map(|_| ())
            })
        } else {
            attach_one(engine, &exit, site.file_offset, &sites.object, pid_nz).and_then(
                |exit_link| {
                    attach_one(engine, &enter, site.file_offset, &sites.object, pid_nz)
                        .map(|_| ())
                        .inspect_err(|_| detach_one(engine, &exit, exit_link))
                },
            )
        };
        match result {
            Ok(_) => {
                report.attached.push(f.symbol);
                let cost = if opts.entry_only {
                    site.entry.cost
                } else {
                    site.probe_cost
                };
                if matches!(cost, ProbeCost::SingleStep) {
                    report.single_stepped.push(f.symbol);
                }
            }
            Err(e) => {
                let why = error_chain(&e);
                tracing::warn!("{}: {why}", f.symbol);
                report.missing.push((f.symbol, why));
            }
        }
    }
    for (symbol, program) in FORGET {
        if let Some(site) = sites.sites.get(symbol)
            && let Err(e) = attach_one(engine, program, site.entry_offset, &sites.object, pid_nz)
        {
            tracing::warn!("{symbol}: {}", error_chain(&e));
        }
    }
    // A kernel without uprobe_multi links is found out at the first attach.
    report.uprobes = engine.uprobes();
    if report.attached.is_empty() {
        let why = report
            .missing
            .first()
            .map_or(String::new(), |(f, w)| format!(" ({f}: {w})"));
        return Err(ProbeError::NothingAttached {
            object: format!("{}{why}", sites.display.display()),
        });
    }
    Ok(report)
}

/// Tells the kernel how far `%rsp` has moved down where function `fid`'s entry program sits
/// (`EntrySite::sp_delta`), so that it finds the stack arguments; needed before attaching an
/// entry-only program of a traced function at its `entry_offset` (0, the default, is right on
/// the first instruction).
pub fn set_sp_delta(engine: &mut Engine, fid: u32, sp_delta: u32) -> Result<(), ProbeError> {
    let map = engine
        .ebpf
        .map_mut("ROCKS_SP_DELTA")
        .ok_or(ProbeError::Map {
            name: "ROCKS_SP_DELTA",
            source: None,
        })?;
    let mut array: Array<_, u32> =
        Array::try_from(map).map_err(ProbeError::map("ROCKS_SP_DELTA"))?;
    array
        .set(fid, sp_delta, 0)
        .map_err(ProbeError::map("ROCKS_SP_DELTA"))
}
