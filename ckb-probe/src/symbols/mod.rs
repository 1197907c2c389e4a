//! ELF analysis of a CKB binary (spec F-2, phase 0): where RocksDB's C API lives, where to
//! attach to each function, what each probe costs, and which Rust functions could be traced.
//!
//! - **Tier 1**: `rocksdb_*` C API functions. They cross the FFI boundary, so they are neither
//!   mangled nor inlined into their callers: reliable uprobe targets.
//! - **Tier 2 / tier 3**: Rust functions of the network, sync, chain, store and tx-pool crates;
//!   see [`tiers`] for the exact rule.
//!
//! Files are read whole (`std::fs::read`); a 60 MB CKB binary is scanned in well under a
//! second because only names that can matter are demangled.

mod elf;
pub mod tiers;
mod version;
mod x86;

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read as _},
    path::{Path, PathBuf},
};

use ckb_probe_common::rocksdb::{FORGET, FORGET_ARGS, TRACED, entry_args};
use serde::Serialize;

pub use x86::{EntrySite, ProbeCost, Stay};

use crate::target::{self, Process, TargetError};

/// Why a binary could not be analysed. Each message is one line naming the file, the problem
/// and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error(
        "{path}: no such file; give the path of the CKB executable (e.g. `$(which ckb)`) or use --pid PID"
    )]
    NotFound { path: PathBuf },
    #[error("{path}: is a directory; give the path of the executable file inside it")]
    IsDirectory { path: PathBuf },
    #[error(
        "{path}: not a regular file (a device, pipe or socket); give the path of the executable"
    )]
    NotAFile { path: PathBuf },
    #[error("{path}: cannot be read; check its permissions or run ckb-probe as root")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: not an ELF file; give a Linux executable or shared library (the `ckb` binary, not a script, archive or directory)"
    )]
    NotElf { path: PathBuf },
    #[error(
        "{path}: truncated or malformed ELF ({detail}); the copy is incomplete or damaged: copy or download it again"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{from}: build-id {from_id} is not the running binary's ({exe}: {exe_id}); give the unstripped build of the very same commit and profile"
    )]
    BuildIdMismatch {
        from: PathBuf,
        from_id: String,
        exe: PathBuf,
        exe_id: String,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
}

impl SymbolsError {
    /// Whether the fault is the file at `path` (e.g. a `--symbols-from` FILE), not some other.
    pub fn is_about(&self, path: &Path) -> bool {
        match self {
            SymbolsError::NotFound { path: p }
            | SymbolsError::IsDirectory { path: p }
            | SymbolsError::NotAFile { path: p }
            | SymbolsError::Unreadable { path: p, .. }
            | SymbolsError::NotElf { path: p }
            | SymbolsError::Corrupt { path: p, .. }
            | SymbolsError::BuildIdMismatch { from: p, .. } => p == path,
            SymbolsError::Target(_) => false,
        }
    }
}

/// How the binary gets RocksDB's C API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linkage {
    /// `rocksdb_*` functions are defined in the executable itself (CKB's case).
    Static,
    /// They come from a shared library (path as the target or the binary sees it).
    Dynamic { library: PathBuf },
    /// No RocksDB C API found.
    None,
}

impl Linkage {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Linkage::Static => "static",
            Linkage::Dynamic { .. } => "dynamic",
            Linkage::None => "none",
        }
    }
}

/// Where to attach to one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Offset of the first instruction in [`RocksDbSites::object`] (aya's `AbsoluteOffset`).
    pub file_offset: u64,
    pub probe_cost: ProbeCost,
    /// E.g. `push %r15`, or the hex bytes when not decoded.
    pub first_insn: String,
    /// Where an entry-only program goes (aya's `AbsoluteOffset`): the first instruction, or a
    /// cheaper one further into the prologue (see [`EntrySite`]). A function probed on return
    /// too keeps its entry program at `file_offset`, where the return probe must be.
    pub entry_offset: u64,
    pub entry: EntrySite,
}

/// The attach sites of a process's RocksDB C API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksDbSites {
    /// The file to hand to `UProbe::attach` (`/proc/PID/exe` or the library's `open_path`).
    pub object: PathBuf,
    /// The same file as the target names it, for messages.
    pub display: PathBuf,
    pub linkage: Linkage,
    /// Every `rocksdb_*` function found, by symbol.
    pub sites: BTreeMap<String, Site>,
}

/// One row of the tier 1 table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tier1Fn {
    pub name: String,
    pub present: bool,
    /// In ckb-probe's `TRACED` or `FORGET` lists.
    pub traced: bool,
    pub file_offset: Option<u64>,
    pub probe_cost: Option<ProbeCost>,
    pub first_insn: Option<String>,
    /// Where an entry-only probe goes: bytes past the first instruction (0: the entry), the
    /// instruction there, its cost, and how far %rsp has moved down at it.
    pub entry_offset: Option<u64>,
    pub entry_insn: Option<String>,
    pub entry_cost: Option<ProbeCost>,
    pub entry_sp_delta: Option<u32>,
    /// Why the entry-only probe stays on the first instruction (null when it moved).
    pub entry_note: Option<String>,
    /// The operation a traced function counts as (`GET`, `PUT`, ...); null for the others and
    /// for the entry-only `FORGET` probes.
    pub op: Option<&'static str>,
}

/// The full report of `ckb-probe symbols`.
#[derive(Debug, Clone, Serialize)]
pub struct BinaryReport {
    pub path: PathBuf,
    /// Set when analysed through `--pid`.
    pub pid: Option<u32>,
    pub size_bytes: u64,
    pub build_id: Option<String>,
    /// No `.symtab`: statically linked C functions cannot be found by name.
    pub stripped: bool,
    pub arch: String,
    pub rocksdb_linkage: &'static str,
    pub rocksdb_library: Option<PathBuf>,
    pub ckb_version: Option<String>,
    /// Traced functions first (in `TRACED` then `FORGET` order), then the other `rocksdb_*`
    /// functions found, by name.
    pub tier1: Vec<Tier1Fn>,
    pub tier1_missing_traced: Vec<String>,
    /// Demangled names (hash removed), sorted; see [`tiers`] for the rule.
    pub tier2: Vec<String>,
    pub tier2_count: usize,
    /// Distinct demangled names: the instances of one generic count once.
    pub tier3_count: usize,
    /// Listed by `symbols --all` only (null otherwise).
    pub tier3: Option<Vec<String>>,
    pub hint: Option<String>,
    /// The unstripped build (same build-id) the functions were read from (`--symbols-from`).
    pub symbols_from: Option<PathBuf>,
}

fn io_error(path: &Path, e: io::Error) -> SymbolsError {
    match e.kind() {
        io::ErrorKind::NotFound => SymbolsError::NotFound { path: path.into() },
        io::ErrorKind::IsADirectory => SymbolsError::IsDirectory { path: path.into() },
        _ => SymbolsError::Unreadable {
            path: path.into(),
            source: e,
        },
    }
}

/// Reads `open`, naming `display` in errors. Checks the ELF magic first so that a large file
/// that is not ELF (a log, a database) is not read whole.
fn read_file(open: &Path, display: &Path) -> Result<Vec<u8>, SymbolsError> {
    let meta = fs::metadata(open).map_err(|e| io_error(display, e))?;
    if meta.is_dir() {
        return Err(SymbolsError::IsDirectory {
            path: display.into(),
        });
    }
    // Reading a device or FIFO could block or never end.
    if !meta.is_file() {
        return Err(SymbolsError::NotAFile {
            path: display.into(),
        });
    }
    let mut file = fs::File::open(open).map_err(|e| io_error(display, e))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(display, e)),
        }
    }
    if !elf::is_elf(&magic[..got]) {
        return Err(SymbolsError::NotElf {
            path: display.into(),
        });
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    data.extend_from_slice(&magic);
    file.read_to_end(&mut data)
        .map_err(|e| io_error(display, e))?;
    Ok(data)
}

fn scan_file<'a>(
    data: &'a [u8],
    display: &Path,
    want_rust: bool,
) -> Result<elf::Scan<'a>, SymbolsError> {
    if !elf::is_elf(data) {
        return Err(SymbolsError::NotElf {
            path: display.into(),
        });
    }
    elf::scan(data, want_rust).map_err(|detail| SymbolsError::Corrupt {
        path: display.into(),
        detail,
    })
}

/// What ckb-probe's entry program of `symbol` reads: a traced function's arguments, the
/// pointer a `FORGET` program reads, or (for functions ckb-probe does not probe) anything.
fn entry_needs(symbol: &str) -> x86::Needs {
    if let Some(id) = TRACED.iter().position(|t| t.symbol == symbol) {
        x86::Needs::args(entry_args(id as u32))
    } else if FORGET.iter().any(|(s, _)| *s == symbol) {
        x86::Needs::args(FORGET_ARGS)
    } else {
        x86::Needs::ALL
    }
}

fn sites_of(scan: &elf::Scan<'_>) -> BTreeMap<String, Site> {
    let x86 = scan.machine == object::elf::EM_X86_64;
    let emulation = x86::Emulation::running();
    scan.rocksdb
        .iter()
        .filter_map(|(name, raw)| {
            let file_offset = raw.file_offset?;
            let entry = if x86 {
                x86::entry_site(&raw.code, raw.whole, entry_needs(name), emulation)
            } else {
                EntrySite {
                    offset: 0,
                    cost: ProbeCost::Unknown,
                    insn: x86_hex(&raw.code),
                    sp_delta: 0,
                    stays: Some(x86::Stay::NotDecoded),
                }
            };
            let (probe_cost, first_insn) = if entry.offset == 0 {
                (entry.cost, entry.insn.clone())
            } else {
                x86::classify(&raw.code, emulation)
            };
            Some((
                name.clone(),
                Site {
                    file_offset,
                    probe_cost,
                    first_insn,
                    entry_offset: file_offset + entry.offset,
                    entry,
                },
            ))
        })
        .collect()
}

fn x86_hex(b: &[u8]) -> String {
    b.iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a library file name is RocksDB's (`librocksdb.so`, `librocksdb.so.7.8`, ...).
fn is_rocksdb_library(name: &str) -> bool {
    name.starts_with("librocksdb.so") || name.starts_with("librocksdb-")
}

/// Directories the dynamic loader would search for a binary at `binary` (its RUNPATH with
/// `$ORIGIN` expanded, ld.so.conf, then the default directories).
fn library_dirs(binary: &Path, runpath: &[String]) -> Vec<PathBuf> {
    let origin = binary
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let origin = origin.to_string_lossy();
    let mut dirs: Vec<PathBuf> = runpath
        .iter()
        .map(|r| {
            PathBuf::from(
                r.replace("${ORIGIN}", &origin)
                    .replace("$ORIGIN", &origin)
                    .replace("${LIB}", "lib")
                    .replace("$LIB", "lib"),
            )
        })
        .collect();
    let mut conf_files = vec![PathBuf::from("/etc/ld.so.conf")];
    if let Ok(d) = fs::read_dir("/etc/ld.so.conf.d") {
        let mut more: Vec<PathBuf> = d
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        conf_files.extend(more);
    }
    for f in conf_files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        dirs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| l.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
        "/usr/local/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// What was learnt about RocksDB linkage, with the sites and the file they refer to.
struct RocksDb {
    linkage: Linkage,
    /// The file the sites' offsets refer to (to open).
    object: PathBuf,
    sites: BTreeMap<String, Site>,
    /// Why a dynamic RocksDB could not be used, if it could not.
    problem: Option<String>,
}

/// Looks for `rocksdb_*` in a library file; `Err` explains why it is not usable.
fn library_sites(open: &Path, display: &Path) -> Result<BTreeMap<String, Site>, String> {
    let data = read_file(open, display).map_err(|e| e.to_string())?;
    let scan = scan_file(&data, display, false).map_err(|e| e.to_string())?;
    let sites = sites_of(&scan);
    if sites.is_empty() {
        Err(format!(
            "{} defines no rocksdb_* functions",
            display.display()
        ))
    } else {
        Ok(sites)
    }
}

fn resolve_static_or_needed(scan: &elf::Scan<'_>, exe_open: &Path, exe: &Path) -> RocksDb {
    let sites = sites_of(scan);
    if !sites.is_empty() {
        return RocksDb {
            linkage: Linkage::Static,
            object: exe_open.into(),
            sites,
            problem: None,
        };
    }
    let none = |problem| RocksDb {
        linkage: Linkage::None,
        object: exe_open.into(),
        sites: BTreeMap::new(),
        problem,
    };
    let Some(needed) = scan.needed.iter().find(|n| is_rocksdb_library(n)) else {
        return none(None);
    };
    let dirs = library_dirs(exe, &scan.runpath);
    let Some(lib) = dirs.iter().map(|d| d.join(needed)).find(|p| p.is_file()) else {
        return none(Some(format!(
            "the binary needs {needed} but it is not in its RUNPATH, ld.so.conf or the default library directories; install it, or analyse the running node with --pid"
        )));
    };
    match library_sites(&lib, &lib) {
        Ok(sites) => RocksDb {
            linkage: Linkage::Dynamic {
                library: lib.clone(),
            },
            object: lib,
            sites,
            problem: None,
        },
        Err(p) => none(Some(p)),
    }
}

fn resolve_process(scan: &elf::Scan<'_>, p: &Process) -> RocksDb {
    let sites = sites_of(scan);
    if !sites.is_empty() {
        return RocksDb {
            linkage: Linkage::Static,
            object: p.exe_open.clone(),
            sites,
            problem: None,
        };
    }
    let mut problem = None;
    for m in &p.mapped {
        if !m.file_name().is_some_and(|n| is_rocksdb_library(&n)) {
            continue;
        }
        match library_sites(&m.open_path, &m.path) {
            Ok(sites) => {
                return RocksDb {
                    linkage: Linkage::Dynamic {
                        library: m.path.clone(),
                    },
                    object: m.open_path.clone(),
                    sites,
                    problem: None,
                };
            }
            Err(e) => problem = Some(e),
        }
    }
    RocksDb {
        linkage: Linkage::None,
        object: p.exe_open.clone(),
        sites: BTreeMap::new(),
        problem,
    }
}

/// Reads the target's executable, naming errors after the path the target sees.
fn read_exe(p: &Process) -> Result<Vec<u8>, SymbolsError> {
    read_file(&p.exe_open, &p.exe).map_err(|e| {
        // The process may have exited since `target::process` looked at it.
        if target::is_alive(p.pid) {
            e
        } else {
            SymbolsError::Target(TargetError::NoSuchProcess { pid: p.pid })
        }
    })
}

/// The attach sites of the RocksDB C API used by process `p` (static in its executable, or a
/// mapped `librocksdb`). `Linkage::None` with no sites when it has none.
pub fn rocksdb_sites(p: &Process) -> Result<RocksDbSites, SymbolsError> {
    let data = read_exe(p)?;
    let scan = scan_file(&data, &p.exe, false)?;
    Ok(sites_for(&scan, p))
}

/// Whether the target's executable is stripped (no symbol table) and yet carries RocksDB: its
/// statistics names (`rocksdb.block.cache.miss`, ...) are in its read-only data.
pub fn stripped_with_rocksdb(p: &Process) -> bool {
    read_exe(p)
        .ok()
        .and_then(|data| {
            let stripped = !scan_file(&data, &p.exe, false).ok()?.has_symtab;
            Some(stripped && memchr::memmem::find(&data, b"rocksdb.block.cache").is_some())
        })
        .unwrap_or(false)
}

fn sites_for(scan: &elf::Scan<'_>, p: &Process) -> RocksDbSites {
    let r = resolve_process(scan, p);
    let display = match &r.linkage {
        Linkage::Dynamic { library } => library.clone(),
        _ => p.exe.clone(),
    };
    RocksDbSites {
        object: r.object,
        display,
        linkage: r.linkage,
        sites: r.sites,
    }
}

/// [`rocksdb_sites`] for a stripped target: the symbols come from `from`, an unstripped build
/// of the same binary (same build-id), and the probes go into the running, stripped one. Strip
/// removes only sections that are not loaded, so the loaded code sits at the same file offsets
/// in both files.
pub fn rocksdb_sites_from(p: &Process, from: &Path) -> Result<RocksDbSites, SymbolsError> {
    let exe = read_exe(p)?;
    let exe_scan = scan_file(&exe, &p.exe, false)?;
    let data = read_file(from, from)?;
    let scan = scan_file(&data, from, false)?;
    same_build(&exe_scan, &p.exe, &scan, from)?;
    Ok(sites_for(&scan, p))
}

/// Refuses `from` unless it is a build of the very binary `exe` is: the same build-id (a
/// binary without one cannot be matched, so it is refused too).
fn same_build(
    exe_scan: &elf::Scan<'_>,
    exe: &Path,
    scan: &elf::Scan<'_>,
    from: &Path,
) -> Result<(), SymbolsError> {
    let id = |s: &Option<String>| s.clone().unwrap_or_else(|| "none".into());
    if exe_scan.build_id.is_none() || exe_scan.build_id != scan.build_id {
        return Err(SymbolsError::BuildIdMismatch {
            from: from.to_path_buf(),
            from_id: id(&scan.build_id),
            exe: exe.to_path_buf(),
            exe_id: id(&exe_scan.build_id),
        });
    }
    Ok(())
}

/// [`analyze`] of a stripped binary with the symbols of `from`, an unstripped build with the
/// same build-id (see [`rocksdb_sites_from`]).
pub fn analyze_symbols_from(path: &Path, from: &Path) -> Result<BinaryReport, SymbolsError> {
    let data = read_file(path, path)?;
    with_symbols_from(path, None, &data, from, |scan| {
        resolve_static_or_needed(scan, path, path)
    })
}

/// [`analyze_process`] of a process running a stripped binary, with the symbols of `from`.
pub fn analyze_process_symbols_from(pid: u32, from: &Path) -> Result<BinaryReport, SymbolsError> {
    let p = target::process(pid)?;
    let data = read_exe(&p)?;
    with_symbols_from(&p.exe, Some(pid), &data, from, |scan| {
        resolve_process(scan, &p)
    })
}

/// The report of the binary `data` (at `path`) whose functions, offsets, first instructions
/// and tiers are read from `from`: the loaded code sits at the same file offsets in both.
fn with_symbols_from(
    path: &Path,
    pid: Option<u32>,
    data: &[u8],
    from: &Path,
    resolve: impl FnOnce(&elf::Scan<'_>) -> RocksDb,
) -> Result<BinaryReport, SymbolsError> {
    let exe_scan = scan_file(data, path, false)?;
    let from_data = read_file(from, from)?;
    let scan = scan_file(&from_data, from, true)?;
    same_build(&exe_scan, path, &scan, from)?;
    let rocks = resolve(&scan);
    let mut r = report(path, pid, data, &scan, rocks);
    r.stripped = !exe_scan.has_symtab;
    r.symbols_from = Some(from.to_path_buf());
    Ok(r)
}

/// The full report for the binary at `path`.
pub fn analyze(path: &Path) -> Result<BinaryReport, SymbolsError> {
    let data = read_file(path, path)?;
    analyze_data(path, &data)
}

/// [`analyze`] on bytes already read from `path`.
fn analyze_data(path: &Path, data: &[u8]) -> Result<BinaryReport, SymbolsError> {
    let scan = scan_file(data, path, true)?;
    let rocks = resolve_static_or_needed(&scan, path, path);
    Ok(report(path, None, data, &scan, rocks))
}

/// The full report for the executable of process `pid` (and the RocksDB library it maps).
pub fn analyze_process(pid: u32) -> Result<BinaryReport, SymbolsError> {
    let p = target::process(pid)?;
    let data = read_exe(&p)?;
    let scan = scan_file(&data, &p.exe, true)?;
    let rocks = resolve_process(&scan, &p);
    Ok(report(&p.exe, Some(pid), &data, &scan, rocks))
}

fn traced_op(name: &str) -> Option<Option<&'static str>> {
    if let Some(t) = TRACED.iter().find(|t| t.symbol == name) {
        return Some(Some(t.op.name()));
    }
    FORGET.iter().any(|(s, _)| *s == name).then_some(None)
}

fn tier1_rows(sites: &BTreeMap<String, Site>) -> Vec<Tier1Fn> {
    let row = |name: &str, traced: bool, op| match sites.get(name) {
        Some(s) => Tier1Fn {
            name: name.into(),
            present: true,
            traced,
            file_offset: Some(s.file_offset),
            probe_cost: Some(s.probe_cost),
            first_insn: Some(s.first_insn.clone()),
            entry_offset: Some(s.entry.offset),
            entry_insn: Some(s.entry.insn.clone()),
            entry_cost: Some(s.entry.cost),
            entry_sp_delta: Some(s.entry.sp_delta),
            entry_note: s.entry.stays.as_ref().map(ToString::to_string),
            op,
        },
        None => Tier1Fn {
            name: name.into(),
            present: false,
            traced,
            file_offset: None,
            probe_cost: None,
            first_insn: None,
            entry_offset: None,
            entry_insn: None,
            entry_cost: None,
            entry_sp_delta: None,
            entry_note: None,
            op,
        },
    };
    let mut rows: Vec<Tier1Fn> = TRACED
        .iter()
        .map(|t| row(t.symbol, true, Some(t.op.name())))
        .chain(FORGET.iter().map(|(s, _)| row(s, true, None)))
        .collect();
    rows.extend(
        sites
            .keys()
            .filter(|n| traced_op(n).is_none())
            .map(|n| row(n, false, None)),
    );
    rows
}

fn report(
    path: &Path,
    pid: Option<u32>,
    data: &[u8],
    scan: &elf::Scan<'_>,
    rocks: RocksDb,
) -> BinaryReport {
    let tier1 = tier1_rows(&rocks.sites);
    let tier1_missing_traced: Vec<String> = tier1
        .iter()
        .filter(|r| r.traced && !r.present)
        .map(|r| r.name.clone())
        .collect();
    let tiers = tiers::grade(scan.rust.iter().copied());
    let stripped = !scan.has_symtab;
    let ckb_version = version::detect(&scan.rodata, scan.ckb_main);

    let mut hints = Vec::new();
    match &rocks.linkage {
        Linkage::None if stripped => hints.push(
            "no rocksdb_* functions found and the binary is stripped (no .symtab): if it links RocksDB statically, as CKB does, its functions cannot be located; pass --symbols-from FILE, an unstripped build of the same binary (same build-id), or run the node from a build that keeps its symbol table (CKB's release and prod profiles do: do not run `strip` or set `strip = true`)".to_string(),
        ),
        Linkage::None => hints.push(rocks.problem.clone().unwrap_or_else(|| {
            "no RocksDB C API functions found: this binary does not use RocksDB through its C API (is it the CKB node executable?)".to_string()
        })),
        _ => {}
    }
    if stripped && !matches!(rocks.linkage, Linkage::None) {
        hints.push(
            "the executable is stripped: tier 2/3 Rust functions cannot be listed (RocksDB probes still work)".to_string(),
        );
    }
    let slow: Vec<&str> = tier1
        .iter()
        // The forget probes (no operation) are entry-only, so they sit on the entry site.
        .filter(|r| {
            let cost = if r.op.is_some() {
                r.probe_cost
            } else {
                r.entry_cost
            };
            r.traced && cost == Some(ProbeCost::SingleStep)
        })
        .map(|r| r.name.as_str())
        .collect();
    if !slow.is_empty() {
        hints.push(format!(
            "{} traced function(s) start with an instruction the kernel must single-step ({}): each probed call costs more (about 14 us instead of 0.4 us on a VM); entry-only probes move to the entry site shown where the prologue allows",
            slow.len(),
            slow.join(", ")
        ));
    }

    BinaryReport {
        path: path.into(),
        pid,
        size_bytes: data.len() as u64,
        build_id: scan.build_id.clone(),
        stripped,
        arch: elf::arch_name(scan.machine, scan.is_64),
        rocksdb_linkage: rocks.linkage.as_str(),
        rocksdb_library: match rocks.linkage {
            Linkage::Dynamic { library } => Some(library),
            _ => None,
        },
        ckb_version,
        tier1,
        tier1_missing_traced,
        tier2_count: tiers.tier2.len(),
        tier2: tiers.tier2,
        tier3_count: tiers.tier3.len(),
        tier3: Some(tiers.tier3),
        hint: (!hints.is_empty()).then(|| hints.join("; ")),
        symbols_from: None,
    }
}

#[cfg(test)]
mod tests;
