//! Attaching the network layer: feature detection (tracepoints, else kprobes), the run-time
//! layout the kernel programs need (tracepoint field offsets from the running kernel's format
//! files, `struct sock_common` offsets from its BTF), and the target's listening ports.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fs,
    path::{Path, PathBuf},
};

use aya::{
    maps::Array,
    programs::{KProbe, TracePoint},
};
use ckb_probe_common::net::{NET_FLAG_SOCK_IPV4, NET_FLAG_SOCK_IPV6, NetConfig};

use super::{Engine, ProbeError, error_chain};

/// Where tracefs may be mounted (the order aya looks in).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracepoints of the preferred path: `(category, name)`.
const TP_STATE: (&str, &str) = ("sock", "inet_sock_set_state");
const TP_SEND: (&str, &str) = ("sock", "sock_send_length");
const TP_RECV: (&str, &str) = ("sock", "sock_recv_length");
const TP_RETRANSMIT: (&str, &str) = ("tcp", "tcp_retransmit_skb");

/// Kprobe path: `(program, kernel function)`.
pub const KPROBES: [(&str, &str); 6] = [
    ("net_kp_connect", "tcp_connect"),
    ("net_kr_accept", "inet_csk_accept"),
    ("net_kp_sendmsg", "tcp_sendmsg"),
    ("net_kr_sendmsg", "tcp_sendmsg"),
    ("net_kp_rbuf", "tcp_cleanup_rbuf"),
    ("net_kp_close", "tcp_close"),
];

/// How the network layer can run on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetPath {
    /// The `sock:` tracepoints exist (and `tcp:tcp_retransmit_skb` when `retransmits`).
    Tracepoints { tracefs: PathBuf, retransmits: bool },
    /// Some `sock:` tracepoint is missing but kprobes exist; `missing` names the tracepoints.
    Kprobes {
        missing: Vec<String>,
        retransmits: bool,
    },
    /// Neither: `why` says what is missing and what to do.
    Unavailable { why: String },
}

impl NetPath {
    pub fn name(&self) -> &'static str {
        match self {
            NetPath::Tracepoints { .. } => "tracepoints",
            NetPath::Kprobes { .. } => "kprobes",
            NetPath::Unavailable { .. } => "unavailable",
        }
    }

    /// One line for `check` and the attach message.
    pub fn describe(&self) -> String {
        match self {
            NetPath::Tracepoints { retransmits, .. } => format!(
                "tracepoints sock:inet_sock_set_state, sock:sock_send_length, sock:sock_recv_length{}",
                if *retransmits {
                    ", tcp:tcp_retransmit_skb"
                } else {
                    " (no tcp:tcp_retransmit_skb: retransmits not counted)"
                }
            ),
            NetPath::Kprobes { missing, .. } => format!(
                "kprobe fallback on tcp_connect/inet_csk_accept/tcp_sendmsg/tcp_cleanup_rbuf/tcp_close \
                 (missing tracepoints: {})",
                missing.join(", ")
            ),
            NetPath::Unavailable { why } => why.clone(),
        }
    }
}

/// The mounted tracefs, if any (read only: nothing is mounted here).
pub fn tracefs() -> Option<PathBuf> {
    TRACEFS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

fn has_event(tracefs: &Path, (cat, name): (&str, &str)) -> bool {
    tracefs
        .join("events")
        .join(cat)
        .join(name)
        .join("format")
        .is_file()
}

/// Whether kprobes can be attached: the perf `kprobe` PMU (what aya uses), or tracefs
/// `kprobe_events` (its fallback). `Err` says why not.
pub fn kprobes_available() -> Result<(), String> {
    if Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        return Ok(());
    }
    if tracefs().is_some_and(|t| t.join("kprobe_events").exists()) {
        return Ok(());
    }
    Err(
        "this kernel has no kprobes (no /sys/bus/event_source/devices/kprobe and no \
         kprobe_events in tracefs: CONFIG_KPROBES is unset)"
            .into(),
    )
}

/// Picks the network layer's path on this kernel (feature detection only; nothing is loaded).
/// For `check`: `Tracepoints` is ok, `Kprobes` ok with a note, `Unavailable` a failure of
/// the `net` layer only.
pub fn detect_path() -> NetPath {
    let tfs = tracefs();
    let missing: Vec<String> = [TP_STATE, TP_SEND, TP_RECV]
        .into_iter()
        .filter(|&e| tfs.as_deref().is_none_or(|t| !has_event(t, e)))
        .map(|(c, n)| format!("{c}:{n}"))
        .collect();
    let retransmits = tfs.as_deref().is_some_and(|t| has_event(t, TP_RETRANSMIT));
    match tfs {
        Some(tracefs) if missing.is_empty() => NetPath::Tracepoints {
            tracefs,
            retransmits,
        },
        tfs => match kprobes_available() {
            Ok(()) => NetPath::Kprobes {
                missing,
                retransmits,
            },
            Err(kp) => NetPath::Unavailable {
                why: if tfs.is_none() {
                    format!(
                        "tracefs is not mounted (mount it: `mount -t tracefs tracefs /sys/kernel/tracing`), \
                         and {kp}"
                    )
                } else {
                    format!(
                        "this kernel lacks the tracepoints {} (sock_send_length and sock_recv_length are recent additions), and {kp}",
                        missing.join(", ")
                    )
                },
            },
        },
    }
}

/// Network-layer errors, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the network layer cannot run here: {0}")]
    Unavailable(String),
    #[error(
        "--force-kprobes: {why}; the kprobe programs {verified}, but cannot be attached. \
         Run without --force-kprobes to use the tracepoints"
    )]
    KprobesUnavailable { why: String, verified: String },
    #[error(
        "tracepoint {event}: {problem} (format file {path}); this kernel's layout is not the one \
         ckb-probe understands, so nothing was attached rather than read wrong fields"
    )]
    Format {
        event: String,
        path: PathBuf,
        problem: String,
    },
    #[error("attaching {program} to {target} failed: {why}")]
    Attach {
        program: &'static str,
        target: String,
        why: String,
    },
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    pub size: u16,
}

/// Fields of a tracepoint `format` file, by name (arrays under their bare name).
pub fn parse_format(text: &str) -> BTreeMap<String, Field> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let (mut offset, mut size) = (None, None);
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.trim().parse::<u16>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u16>().ok();
            } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        // "const void * skaddr", "__u8 saddr[4]": the name is the last word, before any "[".
        let Some(name) = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()
            .map(|n| n.split('[').next().unwrap_or(n))
        else {
            continue;
        };
        if !name.is_empty() {
            out.insert(name.to_string(), Field { offset, size });
        }
    }
    out
}

fn read_format(
    tracefs: &Path,
    (cat, name): (&str, &str),
) -> Result<(PathBuf, BTreeMap<String, Field>), NetError> {
    let path = tracefs.join("events").join(cat).join(name).join("format");
    let text = fs::read_to_string(&path).map_err(|e| NetError::Format {
        event: format!("{cat}:{name}"),
        path: path.clone(),
        problem: format!("cannot read it: {e}"),
    })?;
    Ok((path, parse_format(&text)))
}

/// `name` of `size` bytes in a parsed format, or an error naming the event.
fn need(
    event: (&str, &str),
    path: &Path,
    fields: &BTreeMap<String, Field>,
    name: &str,
    size: u16,
) -> Result<u16, NetError> {
    let err = |problem: String| NetError::Format {
        event: format!("{}:{}", event.0, event.1),
        path: path.to_path_buf(),
        problem,
    };
    let f = fields
        .get(name)
        .ok_or_else(|| err(format!("no field `{name}`")))?;
    if f.size != size {
        return Err(err(format!(
            "field `{name}` has {} bytes, expected {size}",
            f.size
        )));
    }
    Ok(f.offset)
}

/// Fills the tracepoint offsets of `cfg` from the running kernel's format files.
fn tracepoint_offsets(
    tracefs: &Path,
    cfg: &mut NetConfig,
    retransmits: bool,
) -> Result<(), NetError> {
    let (p, f) = read_format(tracefs, TP_STATE)?;
    let n = |name, size| need(TP_STATE, &p, &f, name, size);
    cfg.ss_skaddr = n("skaddr", 8)?;
    cfg.ss_oldstate = n("oldstate", 4)?;
    cfg.ss_newstate = n("newstate", 4)?;
    cfg.ss_sport = n("sport", 2)?;
    cfg.ss_dport = n("dport", 2)?;
    cfg.ss_family = n("family", 2)?;
    cfg.ss_protocol = n("protocol", 2)?;
    cfg.ss_daddr = n("daddr", 4)?;
    cfg.ss_daddr_v6 = n("daddr_v6", 16)?;

    // One program layout serves both: the two formats must agree.
    let mut layouts = Vec::new();
    for ev in [TP_SEND, TP_RECV] {
        let (p, f) = read_format(tracefs, ev)?;
        let n = |name, size| need(ev, &p, &f, name, size);
        layouts.push((
            p.clone(),
            [
                n("sk", 8)?,
                n("family", 2)?,
                n("protocol", 2)?,
                n("ret", 4)?,
                n("flags", 4)?,
            ],
        ));
    }
    if layouts[0].1 != layouts[1].1 {
        return Err(NetError::Format {
            event: "sock:sock_recv_length".into(),
            path: layouts[1].0.clone(),
            problem: "its layout differs from sock:sock_send_length's".into(),
        });
    }
    [
        cfg.len_sk,
        cfg.len_family,
        cfg.len_protocol,
        cfg.len_ret,
        cfg.len_flags,
    ] = layouts[0].1;

    if retransmits {
        let (p, f) = read_format(tracefs, TP_RETRANSMIT)?;
        cfg.rt_skaddr = need(TP_RETRANSMIT, &p, &f, "skaddr", 8)?;
    }
    Ok(())
}

/// Offsets into `struct sock_common` (the start of every `struct sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockOffsets {
    pub daddr: u16,
    pub dport: u16,
    pub num: u16,
    pub family: u16,
    pub state: u16,
    /// Absent on kernels built without IPv6.
    pub v6_daddr: Option<u16>,
    /// "BTF" or why the built-in IPv4 layout is used.
    pub source: String,
}

/// The layout every Linux since 2.6 has had for the IPv4 part of `sock_common`, used when the
/// kernel has no BTF: IPv6 endpoints of sockets opened before the probe are then unknown.
fn sock_offsets_fallback(why: String) -> SockOffsets {
    SockOffsets {
        daddr: 0,
        dport: 12,
        num: 14,
        family: 16,
        state: 18,
        v6_daddr: None,
        source: format!("built-in IPv4 layout ({why})"),
    }
}

/// Reads `struct sock_common`'s member offsets from the kernel's BTF.
pub fn sock_offsets() -> SockOffsets {
    match fs::read("/sys/kernel/btf/vmlinux")
        .map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))
        .and_then(|data| btf::struct_members(&data, "sock_common"))
    {
        Ok(m) => {
            let get = |n: &str| m.get(n).map(|&(off, _)| off);
            let sized = |n: &str, size: u32| {
                m.get(n)
                    .filter(|&&(off, s)| s == size && off % 8 == 0)
                    .and_then(|&(off, _)| u16::try_from(off / 8).ok())
            };
            match (
                sized("skc_daddr", 4),
                sized("skc_dport", 2),
                sized("skc_num", 2),
                sized("skc_family", 2),
                sized("skc_state", 1),
            ) {
                (Some(daddr), Some(dport), Some(num), Some(family), Some(state)) => SockOffsets {
                    daddr,
                    dport,
                    num,
                    family,
                    state,
                    v6_daddr: sized("skc_v6_daddr", 16),
                    source: "BTF".into(),
                },
                _ => sock_offsets_fallback(format!(
                    "BTF sock_common lacks expected members (skc_daddr at {:?})",
                    get("skc_daddr")
                )),
            }
        }
        Err(e) => sock_offsets_fallback(e),
    }
}

/// A minimal reader of the kernel's BTF: enough to find a struct's member offsets.
mod btf {
    use std::collections::BTreeMap;

    const KIND_INT: u32 = 1;
    const KIND_PTR: u32 = 2;
    const KIND_ARRAY: u32 = 3;
    const KIND_STRUCT: u32 = 4;
    const KIND_UNION: u32 = 5;
    const KIND_ENUM: u32 = 6;
    const KIND_TYPEDEF: u32 = 8;
    const KIND_VOLATILE: u32 = 9;
    const KIND_CONST: u32 = 10;
    const KIND_RESTRICT: u32 = 11;
    const KIND_FUNC_PROTO: u32 = 13;
    const KIND_VAR: u32 = 14;
    const KIND_DATASEC: u32 = 15;
    const KIND_DECL_TAG: u32 = 17;
    const KIND_TYPE_TAG: u32 = 18;
    const KIND_ENUM64: u32 = 19;

    struct Type {
        name_off: u32,
        kind: u32,
        kind_flag: bool,
        vlen: usize,
        /// Size for INT/STRUCT/UNION/ENUM, referenced type otherwise.
        size_or_type: u32,
        /// Byte offset of the kind-specific data.
        data: usize,
    }

    fn u32_at(d: &[u8], at: usize) -> Result<u32, String> {
        d.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "BTF truncated".to_string())
    }

    /// `member name → (bit offset, byte size)` of struct `name`, anonymous members flattened.
    pub fn struct_members(d: &[u8], name: &str) -> Result<BTreeMap<String, (u32, u32)>, String> {
        if d.get(..2) != Some(&[0x9f, 0xeb]) {
            return Err("not little-endian BTF".into());
        }
        let hdr_len = u32_at(d, 4)? as usize;
        let type_off = hdr_len + u32_at(d, 8)? as usize;
        let type_len = u32_at(d, 12)? as usize;
        let str_off = hdr_len + u32_at(d, 16)? as usize;
        let str_len = u32_at(d, 20)? as usize;
        let strings = d
            .get(str_off..str_off + str_len)
            .ok_or("BTF string section out of bounds")?;
        let name_of = |off: u32| -> &str {
            let s = strings.get(off as usize..).unwrap_or(&[]);
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            std::str::from_utf8(&s[..end]).unwrap_or("")
        };
        // Type ids start at 1; index 0 is `void`.
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            kind_flag: false,
            vlen: 0,
            size_or_type: 0,
            data: 0,
        }];
        let end = type_off + type_len;
        let mut at = type_off;
        while at + 12 <= end {
            let info = u32_at(d, at + 4)?;
            let t = Type {
                name_off: u32_at(d, at)?,
                kind: (info >> 24) & 0x1f,
                kind_flag: info >> 31 == 1,
                vlen: (info & 0xffff) as usize,
                size_or_type: u32_at(d, at + 8)?,
                data: at + 12,
            };
            let extra = match t.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen,
                k if k <= 19 => 0,
                k => return Err(format!("unknown BTF kind {k}")),
            };
            at = t.data + extra;
            types.push(t);
        }
        let root = types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && name_of(t.name_off) == name)
            .ok_or_else(|| format!("no struct {name} in BTF"))?;

        // Byte size of a type, through modifiers and typedefs.
        let size_of = |mut id: usize| -> u32 {
            for _ in 0..32 {
                let Some(t) = types.get(id) else { return 0 };
                match t.kind {
                    KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => {
                        return t.size_or_type;
                    }
                    KIND_PTR => return 8,
                    KIND_ARRAY => {
                        let elem = u32_at(d, t.data).unwrap_or(0) as usize;
                        let n = u32_at(d, t.data + 8).unwrap_or(0);
                        let mut e = elem;
                        // Resolve the element size without recursion.
                        for _ in 0..32 {
                            match types.get(e) {
                                Some(et)
                                    if matches!(
                                        et.kind,
                                        KIND_TYPEDEF
                                            | KIND_VOLATILE
                                            | KIND_CONST
                                            | KIND_RESTRICT
                                            | KIND_TYPE_TAG
                                    ) =>
                                {
                                    e = et.size_or_type as usize
                                }
                                Some(et) if et.kind == KIND_PTR => return 8 * n,
                                Some(et) => return et.size_or_type * n,
                                None => return 0,
                            }
                        }
                        return 0;
                    }
                    KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                        id = t.size_or_type as usize
                    }
                    _ => return 0,
                }
            }
            0
        };
        let strip = |mut id: usize| -> usize {
            for _ in 0..32 {
                match types.get(id) {
                    Some(t)
                        if matches!(
                            t.kind,
                            KIND_TYPEDEF
                                | KIND_VOLATILE
                                | KIND_CONST
                                | KIND_RESTRICT
                                | KIND_TYPE_TAG
                        ) =>
                    {
                        id = t.size_or_type as usize
                    }
                    _ => break,
                }
            }
            id
        };

        let mut out = BTreeMap::new();
        // (type id, bit offset of that aggregate), depth-first through anonymous members.
        let mut stack = vec![(root, 0u32)];
        let mut guard = 0;
        while let Some((id, base)) = stack.pop() {
            guard += 1;
            if guard > 1_000 {
                return Err("BTF nesting too deep".into());
            }
            let t = &types[id];
            for i in 0..t.vlen {
                let m = t.data + 12 * i;
                let (mname, mtype, moff) = (u32_at(d, m)?, u32_at(d, m + 4)?, u32_at(d, m + 8)?);
                let bit_off = if t.kind_flag { moff & 0xff_ffff } else { moff };
                let mname = name_of(mname);
                let inner = strip(mtype as usize);
                if mname.is_empty() {
                    if types
                        .get(inner)
                        .is_some_and(|x| x.kind == KIND_STRUCT || x.kind == KIND_UNION)
                    {
                        stack.push((inner, base + bit_off));
                    }
                } else {
                    out.entry(mname.to_string())
                        .or_insert((base + bit_off, size_of(mtype as usize)));
                }
            }
        }
        Ok(out)
    }
}

/// TCP ports the process listens on: LISTEN rows of /proc/PID/net/tcp{,6} whose socket inode
/// is one of the process's open file descriptors (the net files list the whole namespace).
pub fn target_listen_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = HashSet::new();
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(link) = fs::read_link(e.path())
                && let Some(ino) = link
                    .to_str()
                    .and_then(|s| s.strip_prefix("socket:["))
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
            {
                inodes.insert(ino);
            }
        }
    }
    let mut ports = BTreeSet::new();
    for f in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{f}")) else {
            continue;
        };
        for (port, st, ino) in text.lines().skip(1).filter_map(proc_net_row) {
            if st == 0x0a && inodes.contains(&ino) {
                ports.insert(port);
            }
        }
    }
    ports
}

/// `(local port, state, inode)` of a /proc/net/tcp row.
fn proc_net_row(line: &str) -> Option<(u16, u8, u64)> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
    let st = u8::from_str_radix(cols.get(3)?, 16).ok()?;
    let ino = cols.get(9)?.parse().ok()?;
    Some((port, st, ino))
}

/// Options of the network layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetOptions {
    /// Use the kprobe path even where the tracepoints exist (for testing the fallback).
    pub force_kprobes: bool,
}

/// What was attached.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetAttach {
    /// "tracepoints" or "kprobes".
    pub path: &'static str,
    pub description: String,
    pub programs: Vec<&'static str>,
    pub retransmits: bool,
    /// Where `struct sock_common` offsets came from.
    pub sock_layout: String,
}

impl NetAttach {
    /// Whether the kernel programs learn the target's new listening ports themselves (the
    /// state tracepoint sees `listen`); the kprobe path only knows what user space tells it.
    pub fn learns_listen_ports(&self) -> bool {
        self.programs.contains(&"net_set_state")
    }
}

fn program<'a, T>(engine: &'a mut Engine, name: &'static str) -> Result<&'a mut T, NetError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = engine.ebpf.program_mut(name).ok_or(ProbeError::Map {
        name: "program missing from the eBPF object",
        source: None,
    })?;
    p.try_into()
        .map_err(|source| ProbeError::Program {
            name: name.to_string(),
            source,
        })
        .map_err(NetError::from)
}

fn load_tracepoint<'a>(
    engine: &'a mut Engine,
    name: &'static str,
) -> Result<&'a mut TracePoint, NetError> {
    let prog: &mut TracePoint = program(engine, name)?;
    if prog.fd().is_err() {
        prog.load().map_err(|source| ProbeError::Program {
            name: name.to_string(),
            source,
        })?;
    }
    Ok(prog)
}

fn load_kprobe<'a>(engine: &'a mut Engine, name: &'static str) -> Result<&'a mut KProbe, NetError> {
    let prog: &mut KProbe = program(engine, name)?;
    if prog.fd().is_err() {
        prog.load().map_err(|source| ProbeError::Program {
            name: name.to_string(),
            source,
        })?;
    }
    Ok(prog)
}

fn write_config(engine: &mut Engine, cfg: NetConfig) -> Result<(), NetError> {
    let map = engine.ebpf.map_mut("NET_CONFIG").ok_or(ProbeError::Map {
        name: "NET_CONFIG",
        source: None,
    })?;
    let mut array: Array<_, NetConfig> = Array::try_from(map).map_err(|e| ProbeError::Map {
        name: "NET_CONFIG",
        source: Some(e),
    })?;
    array.set(0, cfg, 0).map_err(|e| ProbeError::Map {
        name: "NET_CONFIG",
        source: Some(e),
    })?;
    Ok(())
}

fn attach_tracepoint(
    engine: &mut Engine,
    name: &'static str,
    (cat, event): (&str, &str),
) -> Result<(), NetError> {
    load_tracepoint(engine, name)?
        .attach(cat, event)
        .map(drop)
        .map_err(|e| NetError::Attach {
            program: name,
            target: format!("tracepoint {cat}:{event}"),
            why: error_chain(&e),
        })
}

/// Attaches the network layer on the path [`detect_path`] picks (the kprobe path when forced).
/// The collector should exist already (it seeds the listening ports the programs consult).
/// On error nothing stays attached once the engine is dropped.
pub fn attach(engine: &mut Engine, opts: NetOptions) -> Result<NetAttach, NetError> {
    let detected = detect_path();
    let path = if opts.force_kprobes {
        NetPath::Kprobes {
            missing: vec!["(forced)".into()],
            retransmits: matches!(
                detected,
                NetPath::Tracepoints {
                    retransmits: true,
                    ..
                } | NetPath::Kprobes {
                    retransmits: true,
                    ..
                }
            ),
        }
    } else {
        detected
    };
    let sock = sock_offsets();
    let mut cfg = NetConfig {
        flags: NET_FLAG_SOCK_IPV4,
        sk_daddr: sock.daddr,
        sk_dport: sock.dport,
        sk_num: sock.num,
        sk_family: sock.family,
        sk_state: sock.state,
        ..NetConfig::default()
    };
    if let Some(v6) = sock.v6_daddr {
        cfg.flags |= NET_FLAG_SOCK_IPV6;
        cfg.sk_v6_daddr = v6;
    }
    let mut programs = Vec::new();
    let retransmits = match &path {
        NetPath::Unavailable { why } => return Err(NetError::Unavailable(why.clone())),
        NetPath::Tracepoints {
            tracefs,
            retransmits,
        } => {
            tracepoint_offsets(tracefs, &mut cfg, *retransmits)?;
            write_config(engine, cfg)?;
            // State first: sockets opened from now on are known before their first byte.
            attach_tracepoint(engine, "net_set_state", TP_STATE)?;
            attach_tracepoint(engine, "net_send_len", TP_SEND)?;
            attach_tracepoint(engine, "net_recv_len", TP_RECV)?;
            programs.extend(["net_set_state", "net_send_len", "net_recv_len"]);
            *retransmits
        }
        NetPath::Kprobes { retransmits, .. } => {
            // Loading runs the verifier: a broken fallback is reported even where it cannot run.
            for (name, _) in KPROBES {
                load_kprobe(engine, name)?;
            }
            if let Err(why) = kprobes_available() {
                return Err(NetError::KprobesUnavailable {
                    why,
                    verified: format!("({}) passed the verifier", KPROBES.len()),
                });
            }
            let tfs = tracefs();
            let retransmits = *retransmits && tfs.is_some();
            if let Some(t) = tfs.as_deref().filter(|_| retransmits) {
                tracepoint_offsets_retransmit_only(t, &mut cfg)?;
            }
            write_config(engine, cfg)?;
            for (name, func) in KPROBES {
                load_kprobe(engine, name)?
                    .attach(func, 0)
                    .map_err(|e| NetError::Attach {
                        program: name,
                        target: format!("kernel function {func}"),
                        why: error_chain(&e),
                    })?;
                programs.push(name);
            }
            retransmits
        }
    };
    if retransmits {
        attach_tracepoint(engine, "net_retransmit", TP_RETRANSMIT)?;
        programs.push("net_retransmit");
    }
    Ok(NetAttach {
        path: path.name(),
        description: path.describe(),
        programs,
        retransmits,
        sock_layout: sock.source,
    })
}

fn tracepoint_offsets_retransmit_only(tracefs: &Path, cfg: &mut NetConfig) -> Result<(), NetError> {
    let (p, f) = read_format(tracefs, TP_RETRANSMIT)?;
    cfg.rt_skaddr = need(TP_RETRANSMIT, &p, &f, "skaddr", 8)?;
    Ok(())
}

/// Mounts tracefs at /sys/kernel/tracing when no tracefs is mounted (the tracepoints are
/// attached through it). Returns whether a mount was made.
pub fn ensure_tracefs() -> Result<bool, String> {
    if tracefs().is_some() {
        return Ok(false);
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "tracefs is not mounted and mounting it failed ({}); run `mount -t tracefs tracefs /sys/kernel/tracing` as root",
            std::io::Error::last_os_error()
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE_FORMAT: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s\", REC->family
";

    #[test]
    fn format_fields() {
        let f = parse_format(STATE_FORMAT);
        assert_eq!(f["skaddr"], Field { offset: 8, size: 8 });
        assert_eq!(
            f["oldstate"],
            Field {
                offset: 16,
                size: 4
            }
        );
        assert_eq!(
            f["sport"],
            Field {
                offset: 24,
                size: 2
            }
        );
        assert_eq!(
            f["daddr_v6"],
            Field {
                offset: 56,
                size: 16
            }
        );
        assert!(!f.contains_key("family"));
        let p = Path::new("/x");
        let ev = ("sock", "inet_sock_set_state");
        assert_eq!(need(ev, p, &f, "skaddr", 8).unwrap(), 8);
        let e = need(ev, p, &f, "sport", 4).unwrap_err().to_string();
        assert!(e.contains("has 2 bytes, expected 4"), "{e}");
        let e = need(ev, p, &f, "family", 2).unwrap_err().to_string();
        assert!(e.contains("no field `family`"), "{e}");
    }

    #[test]
    fn proc_net_rows() {
        let row = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(proc_net_row(row), Some((8080, 0x0a, 12345)));
        assert_eq!(proc_net_row("garbage"), None);
    }

    #[test]
    fn running_kernel_layout() {
        // This machine's kernel: the BTF reader must agree with the long-stable IPv4 layout.
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let s = sock_offsets();
        assert_eq!(s.source, "BTF");
        assert_eq!(
            (s.daddr, s.dport, s.num, s.family, s.state),
            (0, 12, 14, 16, 18)
        );
        assert!(s.v6_daddr.is_some_and(|o| o >= 20));
    }
}
