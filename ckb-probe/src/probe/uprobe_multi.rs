//! uprobe_multi links: `BPF_LINK_CREATE` with `BPF_TRACE_UPROBE_MULTI` (kernel >= 6.6).
//!
//! Why not Aya's `UProbe`: since 2025 the kernel requires CAP_SYS_ADMIN to open a perf-event
//! uprobe ("perf/core: require CAP_SYS_ADMIN for uprobes"), while a uprobe_multi link needs only
//! CAP_BPF + CAP_PERFMON; and closing a link unregisters its uprobes without the per-event
//! teardown of perf events. Aya 0.14 cannot load a program with that expected attach type, so
//! the programs are loaded here from the same object, relocated against the maps Aya created:
//! kernel and user side still share every map.

use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

use aya::{Ebpf, maps::Map};
use aya_obj::{
    Object, ProgramSection,
    generated::{
        BPF_F_UPROBE_MULTI_RETURN, bpf_attach_type::BPF_TRACE_UPROBE_MULTI, bpf_attr, bpf_cmd,
        bpf_prog_type::BPF_PROG_TYPE_KPROBE,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    #[error("the eBPF object could not be prepared for uprobe_multi links: {0}")]
    Object(String),
    #[error("eBPF program {0} is not in the object")]
    NoProgram(String),
    #[error("loading {name} for uprobe_multi failed{log}")]
    Load {
        name: String,
        source: io::Error,
        log: String,
    },
    #[error("creating the uprobe_multi link failed")]
    Link(#[source] io::Error),
}

/// The object's programs, relocated against the maps of one loaded [`Ebpf`], loaded on demand
/// with the uprobe_multi attach type. Dropping it (after the links) unloads them.
pub struct Loader {
    obj: Object,
    /// Copies of the maps' descriptors, whose numbers the relocated instructions hold: a
    /// collector may drop its map before a program is loaded, and a reused number would then
    /// point a program at some other object.
    _maps: Vec<OwnedFd>,
    loaded: HashMap<String, OwnedFd>,
}

impl Loader {
    pub fn new(ebpf: &Ebpf, elf: &[u8]) -> Result<Self, MultiError> {
        let mut obj = Object::parse(elf).map_err(|e| MultiError::Object(e.to_string()))?;
        let mut maps = Vec::new();
        let mut fds: HashMap<&str, RawFd> = HashMap::new();
        for (name, map) in ebpf.maps() {
            let fd = map_fd(map)
                .try_clone_to_owned()
                .map_err(|e| MultiError::Object(e.to_string()))?;
            fds.insert(name, fd.as_raw_fd());
            maps.push(fd);
        }
        let defs = std::mem::take(&mut obj.maps);
        let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
        obj.relocate_maps(
            defs.iter()
                .filter_map(|(name, def)| Some((name.as_str(), *fds.get(name.as_str())?, def))),
            &text_sections,
        )
        .map_err(|e| MultiError::Object(e.to_string()))?;
        obj.relocate_calls(&text_sections)
            .map_err(|e| MultiError::Object(e.to_string()))?;
        Ok(Loader {
            obj,
            _maps: maps,
            loaded: HashMap::new(),
        })
    }

    fn program(&mut self, name: &str) -> Result<RawFd, MultiError> {
        if let Some(fd) = self.loaded.get(name) {
            return Ok(fd.as_raw_fd());
        }
        let prog = self
            .obj
            .programs
            .get(name)
            .ok_or_else(|| MultiError::NoProgram(name.into()))?;
        let insns = &self.obj.functions[&prog.function_key()].instructions;
        let fd = load(name, &prog.license, insns)?;
        let raw = fd.as_raw_fd();
        self.loaded.insert(name.into(), fd);
        Ok(raw)
    }

    /// Attaches program `name` at `offset` of `object` (a return probe if the program's section
    /// says `uretprobe`), for process `pid` only. The link lives as long as the returned
    /// descriptor.
    pub fn attach(
        &mut self,
        name: &str,
        object: &Path,
        offset: u64,
        pid: u32,
    ) -> Result<OwnedFd, MultiError> {
        let ret = matches!(
            self.obj.programs.get(name).map(|p| &p.section),
            Some(ProgramSection::URetProbe { .. })
        );
        let prog = self.program(name)?;
        let path = CString::new(object.as_os_str().as_encoded_bytes())
            .map_err(|_| MultiError::Link(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let offsets = [offset];
        // SAFETY: bpf_attr is plain old data; zero is the documented default of every field.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing the link_create member of the zeroed union.
        unsafe {
            let lc = &mut attr.link_create;
            lc.__bindgen_anon_1.prog_fd = prog as u32;
            lc.attach_type = BPF_TRACE_UPROBE_MULTI as u32;
            let um = &mut lc.__bindgen_anon_3.uprobe_multi;
            um.path = path.as_ptr() as u64;
            um.offsets = offsets.as_ptr() as u64;
            um.cnt = offsets.len() as u32;
            um.flags = if ret { BPF_F_UPROBE_MULTI_RETURN } else { 0 };
            um.pid = pid;
        }
        bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr).map_err(MultiError::Link)
    }
}

/// Every map variant holds its kernel object the same way; Aya exposes the descriptor only on
/// the typed wrappers, so it is matched out here.
fn map_fd(map: &Map) -> BorrowedFd<'_> {
    let data = match map {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::BloomFilter(d)
        | Map::CgroupArray(d)
        | Map::CgroupStorage(d)
        | Map::CgrpStorage(d)
        | Map::CpuMap(d)
        | Map::DevMap(d)
        | Map::DevMapHash(d)
        | Map::HashMap(d)
        | Map::HashOfMaps(d)
        | Map::InodeStorage(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuCgroupStorage(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::ReusePortSockArray(d)
        | Map::RingBuf(d)
        | Map::SockHash(d)
        | Map::SockMap(d)
        | Map::SkStorage(d)
        | Map::Stack(d)
        | Map::StackTraceMap(d)
        | Map::Unsupported(d)
        | Map::XskMap(d) => d,
    };
    data.fd().as_fd()
}

/// BPF_PROG_LOAD as a KPROBE program expecting uprobe_multi links. The first try goes without
/// a verifier log (the common case, and cheaper); a rejection is loaded again with one, so the
/// error names the refused instruction.
fn load(
    name: &str,
    license: &CString,
    insns: &[aya_obj::generated::bpf_insn],
) -> Result<OwnedFd, MultiError> {
    let try_load = |log: Option<&mut Vec<u8>>| {
        // SAFETY: as in `Loader::attach`.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing the program-load member of the zeroed union; the pointers outlive
        // the call.
        unsafe {
            let p = &mut attr.__bindgen_anon_3;
            p.prog_type = BPF_PROG_TYPE_KPROBE as u32;
            p.expected_attach_type = BPF_TRACE_UPROBE_MULTI as u32;
            p.insns = insns.as_ptr() as u64;
            p.insn_cnt = insns.len() as u32;
            p.license = license.as_ptr() as u64;
            for (dst, src) in p.prog_name.iter_mut().zip(name.bytes().take(15)) {
                *dst = src as std::ffi::c_char;
            }
            if let Some(buf) = log {
                p.log_level = 1;
                p.log_buf = buf.as_mut_ptr() as u64;
                p.log_size = buf.len() as u32;
            }
        }
        bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    try_load(None).or_else(|first| {
        let mut buf = vec![0u8; 1 << 20];
        try_load(Some(&mut buf)).map_err(|_| {
            let tail = super::verifier_tail(&String::from_utf8_lossy(&buf));
            let log = if tail.is_empty() {
                tail
            } else {
                format!(" ({tail})")
            };
            MultiError::Load {
                name: name.into(),
                source: first,
                log,
            }
        })
    })
}

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    let fd = super::sys_bpf(cmd, attr)?;
    // SAFETY: on success BPF_PROG_LOAD and BPF_LINK_CREATE return a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
