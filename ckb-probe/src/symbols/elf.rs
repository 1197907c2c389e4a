//! One pass over an ELF file: header facts, dynamic entries, build-id, the `rocksdb_*`
//! functions with their attach offsets and first bytes, and the Rust names worth grading.
//!
//! Everything is bounds-checked (object's parsers return errors, and our own arithmetic is
//! checked), so a truncated or mutated file yields an error string, never a panic.

use std::collections::{BTreeMap, HashSet};

use object::{
    Endianness, FileKind,
    elf::{self, FileHeader32, FileHeader64},
    read::elf::{Dyn as _, FileHeader, ProgramHeader as _, SectionHeader as _, Sym as _},
};

use super::tiers::Prefilter;

/// Bytes kept from the start of each function: enough for the prologue walk of any C API
/// wrapper (it also needs every jump of the function), and for the first instruction (15 bytes
/// at most) of a symbol without a size.
const CODE_MAX: usize = 16 << 10;
const FIRST_BYTES: usize = 15;

/// A `rocksdb_*` function found in a symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSite {
    /// Where the kernel should place the uprobe; `None` when the symbol's address is not
    /// backed by file contents (which would be a malformed file).
    pub file_offset: Option<u64>,
    /// The function's code from its entry, or its first bytes when `whole` is false.
    pub code: Vec<u8>,
    /// `code` holds the whole function (its symbol size is known and at most `CODE_MAX`).
    pub whole: bool,
}

/// What one pass over the file learnt.
#[derive(Debug, Default)]
pub struct Scan<'a> {
    pub machine: u16,
    pub is_64: bool,
    pub build_id: Option<String>,
    /// An `SHT_SYMTAB` section exists.
    pub has_symtab: bool,
    pub needed: Vec<String>,
    /// `DT_RUNPATH` (or, when absent, `DT_RPATH`) entries, unexpanded.
    pub runpath: Vec<String>,
    pub rocksdb: BTreeMap<String, RawSite>,
    /// Mangled names of defined functions that mention the graded crates (one per symbol).
    pub rust: Vec<&'a [u8]>,
    /// Contents of read-only data sections (for version strings).
    pub rodata: Vec<&'a [u8]>,
    /// Machine code of CKB's `ckb::main` (where the release version is an immediate).
    pub ckb_main: Option<&'a [u8]>,
}

/// Whether `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(&elf::ELFMAG)
}

/// Scans `data`. `want_rust` collects the Rust names and read-only data (skip it when only
/// the attach sites are needed). Errors are a short description of what is malformed.
pub fn scan(data: &[u8], want_rust: bool) -> Result<Scan<'_>, String> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => scan_generic::<FileHeader64<Endianness>>(data, want_rust),
        Ok(FileKind::Elf32) => scan_generic::<FileHeader32<Endianness>>(data, want_rust),
        Ok(_) => Err("not an ELF file".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn ctx<T>(r: object::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn scan_generic<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
    want_rust: bool,
) -> Result<Scan<'_>, String> {
    let header = ctx(Elf::parse(data), "ELF header")?;
    let endian = ctx(header.endian(), "ELF header")?;
    let sections = ctx(header.sections(endian, data), "section headers")?;
    if sections.is_empty() {
        return Err("no section headers".into());
    }
    let mut out = Scan {
        machine: header.e_machine(endian),
        is_64: header.is_class_64(),
        ..Scan::default()
    };

    for s in sections.iter() {
        if let Some(mut notes) = ctx(s.notes(endian, data), "note section")? {
            while let Some(note) = ctx(notes.next(), "note section")? {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                    out.build_id = Some(note.desc().iter().map(|b| format!("{b:02x}")).collect());
                }
            }
        }
        if want_rust
            && s.sh_type(endian) == elf::SHT_PROGBITS
            && s.sh_flags(endian).into() & u64::from(elf::SHF_ALLOC) != 0
            && s.sh_flags(endian).into() & u64::from(elf::SHF_EXECINSTR | elf::SHF_WRITE) == 0
            && let Ok(bytes) = s.data(endian, data)
        {
            out.rodata.push(bytes);
        }
    }

    if let Some((dynamic, link)) = ctx(sections.dynamic(endian, data), "dynamic section")? {
        let strings = ctx(sections.strings(endian, data, link), "dynamic string table")?;
        let mut rpath = Vec::new();
        for d in dynamic {
            let tag: u64 = d.d_tag(endian).into();
            if tag == u64::from(elf::DT_NULL) {
                break;
            }
            let is = |t: u32| tag == u64::from(t);
            if !(is(elf::DT_NEEDED) || is(elf::DT_RUNPATH) || is(elf::DT_RPATH)) {
                continue;
            }
            let off: u64 = d.d_val(endian).into();
            let s = u32::try_from(off)
                .ok()
                .and_then(|o| strings.get(o).ok())
                .ok_or("dynamic section: string offset out of range")?;
            let s = String::from_utf8_lossy(s).into_owned();
            if is(elf::DT_NEEDED) {
                out.needed.push(s);
            } else {
                let list = if is(elf::DT_RUNPATH) {
                    &mut out.runpath
                } else {
                    &mut rpath
                };
                list.extend(s.split(':').filter(|p| !p.is_empty()).map(String::from));
            }
        }
        // ld.so ignores DT_RPATH when DT_RUNPATH is present.
        if out.runpath.is_empty() {
            out.runpath = rpath;
        }
    }

    let prefilter = Prefilter::default();
    let mut seen_rust: HashSet<&[u8]> = HashSet::new();
    for sh_type in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
        let what = if sh_type == elf::SHT_SYMTAB {
            "symbol table"
        } else {
            "dynamic symbol table"
        };
        let symbols = ctx(sections.symbols(endian, data, sh_type), what)?;
        if sh_type == elf::SHT_SYMTAB {
            out.has_symtab = !symbols.is_empty();
        }
        for (index, sym) in symbols.enumerate() {
            if sym.st_type() != elf::STT_FUNC || sym.is_undefined(endian) {
                continue;
            }
            let name = ctx(symbols.symbol_name(endian, sym), what)?;
            if let Some(rest) = name.strip_prefix(b"rocksdb_") {
                // Skip compiler-made pieces such as `rocksdb_x.cold`: not C API entry points.
                if rest.is_empty() || !rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    continue;
                }
                let key = String::from_utf8_lossy(name).into_owned();
                if out.rocksdb.contains_key(&key) {
                    continue;
                }
                let value: u64 = sym.st_value(endian).into();
                let section = ctx(symbols.symbol_section(endian, sym, index), what)?;
                let file_offset = section
                    .and_then(|i| sections.section(i).ok())
                    .and_then(|s| section_offset::<Elf>(s, endian, value))
                    .or_else(|| segment_offset(header, endian, data, value));
                let size = usize::try_from(sym.st_size(endian).into()).unwrap_or(usize::MAX);
                let whole = size > 0 && size <= CODE_MAX;
                let want = if whole { size } else { FIRST_BYTES };
                let code = file_offset
                    .and_then(|o| usize::try_from(o).ok())
                    .and_then(|o| data.get(o..data.len().min(o.saturating_add(want))))
                    .unwrap_or_default();
                out.rocksdb.insert(
                    key,
                    RawSite {
                        file_offset,
                        whole: whole && code.len() == size,
                        code: code.to_vec(),
                    },
                );
            } else if want_rust && is_ckb_main(name) && out.ckb_main.is_none() {
                let value: u64 = sym.st_value(endian).into();
                let size: u64 = sym.st_size(endian).into();
                let section = ctx(symbols.symbol_section(endian, sym, index), what)?;
                out.ckb_main = section
                    .and_then(|i| sections.section(i).ok())
                    .and_then(|s| section_offset::<Elf>(s, endian, value))
                    .and_then(|o| {
                        let start = usize::try_from(o).ok()?;
                        // A sane bound: `main` is a few dozen instructions.
                        let len = usize::try_from(size.min(4096)).ok()?;
                        data.get(start..start.checked_add(len)?)
                    });
            } else if want_rust && prefilter.wants(name) {
                // The same function may be in both tables, or carry LTO's `.llvm.N` suffix.
                let base = name.split(|&b| b == b'.').next().unwrap_or(name);
                // Graded from .symtab when there is one (it holds everything .dynsym does).
                if (sh_type == elf::SHT_SYMTAB || !out.has_symtab) && seen_rust.insert(base) {
                    out.rust.push(name);
                }
            }
        }
    }
    Ok(out)
}

/// CKB's `fn main` in the `ckb` crate (legacy or v0 mangling).
fn is_ckb_main(name: &[u8]) -> bool {
    if name.starts_with(b"_ZN3ckb4main17h") {
        return true;
    }
    // v0: `_RNvCs<disambiguator>_3ckb4main`
    name.starts_with(b"_RNvCs") && name.ends_with(b"_3ckb4main")
}

/// `st_value - sh_addr + sh_offset`, when the address lies in the section's file contents.
fn section_offset<Elf: FileHeader>(
    s: &Elf::SectionHeader,
    endian: Elf::Endian,
    value: u64,
) -> Option<u64> {
    // An uprobe needs the instruction's bytes in the file, in code.
    if s.sh_type(endian) == elf::SHT_NOBITS
        || s.sh_flags(endian).into() & u64::from(elf::SHF_EXECINSTR) == 0
    {
        return None;
    }
    let into = value.checked_sub(s.sh_addr(endian).into())?;
    if into >= s.sh_size(endian).into() {
        return None;
    }
    into.checked_add(s.sh_offset(endian).into())
}

/// The same through the loadable segments (for symbols without a usable section index).
fn segment_offset<Elf: FileHeader>(
    header: &Elf,
    endian: Elf::Endian,
    data: &[u8],
    value: u64,
) -> Option<u64> {
    header
        .program_headers(endian, data)
        .ok()?
        .iter()
        .find_map(|ph| {
            if ph.p_type(endian) != elf::PT_LOAD || ph.p_flags(endian) & elf::PF_X == 0 {
                return None;
            }
            let into = value.checked_sub(ph.p_vaddr(endian).into())?;
            (into < ph.p_filesz(endian).into())
                .then(|| into.checked_add(ph.p_offset(endian).into()))?
        })
}

/// A readable name for `e_machine`.
pub fn arch_name(machine: u16, is_64: bool) -> String {
    match machine {
        elf::EM_X86_64 => "x86_64".into(),
        elf::EM_386 => "x86".into(),
        elf::EM_AARCH64 => "aarch64".into(),
        elf::EM_ARM => "arm".into(),
        elf::EM_RISCV if is_64 => "riscv64".into(),
        elf::EM_RISCV => "riscv32".into(),
        elf::EM_PPC64 => "powerpc64".into(),
        elf::EM_S390 => "s390x".into(),
        elf::EM_LOONGARCH => "loongarch64".into(),
        elf::EM_BPF => "bpf".into(),
        m => format!("e_machine {m}"),
    }
}
