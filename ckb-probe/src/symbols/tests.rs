//! Unit and property tests of the ELF analysis.

use std::{ops::Range, path::Path, sync::LazyLock};

use object::{
    Endianness,
    elf::{self, FileHeader64},
    read::elf::{FileHeader as _, SectionHeader as _},
};
use proptest::prelude::*;

use super::*;

const LS: &str = "/bin/ls";
const DEBIAN_ROCKSDB: &str = "/usr/lib/x86_64-linux-gnu/librocksdb.so.7.8";

static SMALL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(LS)
        .or_else(|_| std::fs::read(std::env::current_exe().expect("test binary path")))
        .expect("an ELF to mutate")
});
static SELF: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(std::env::current_exe().expect("test binary path")).expect("test binary")
});

/// Byte ranges the parser actually interprets: ELF header, program and section header tables,
/// and the start of every symbol, string, dynamic and note section. Mutating code bytes would
/// mostly test nothing.
fn structural_ranges(data: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    out.push(0..64.min(data.len()));
    let Ok(h) = FileHeader64::<Endianness>::parse(data) else {
        return out;
    };
    let Ok(e) = h.endian() else { return out };
    let ph = h.e_phoff(e) as usize;
    out.push(ph..ph + usize::from(h.e_phnum(e)) * 56);
    let sh = h.e_shoff(e) as usize;
    out.push(sh..sh + usize::from(h.e_shnum(e)) * 64);
    if let Ok(sections) = h.sections(e, data) {
        for s in sections.iter() {
            if matches!(
                s.sh_type(e),
                elf::SHT_SYMTAB
                    | elf::SHT_DYNSYM
                    | elf::SHT_STRTAB
                    | elf::SHT_DYNAMIC
                    | elf::SHT_NOTE
            ) {
                let o = s.sh_offset(e) as usize;
                out.push(o..o + (s.sh_size(e) as usize).min(4096));
            }
        }
    }
    out.retain(|r| r.start < r.end && r.end <= data.len());
    out
}

fn mutate(data: &[u8], edits: &[(usize, usize, u8)]) -> Vec<u8> {
    let ranges = structural_ranges(data);
    let mut d = data.to_vec();
    for &(which, at, value) in edits {
        // Half the edits hit structures, the rest land anywhere.
        let pos = if which % 2 == 0 {
            let r = &ranges[(which / 2) % ranges.len()];
            r.start + at % (r.end - r.start)
        } else {
            at % d.len()
        };
        d[pos] = value;
    }
    d
}

fn check_no_panic(data: &[u8]) {
    // Ok or Err are both fine; a panic fails the test.
    let _ = analyze_data(Path::new("mutated"), data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn truncated_small_elf_never_panics(cut in 0usize..1_000_000) {
        let d = &SMALL[..cut % (SMALL.len() + 1)];
        check_no_panic(d);
    }

    #[test]
    fn mutated_small_elf_never_panics(
        edits in prop::collection::vec((0usize..64, any::<usize>(), any::<u8>()), 1..16),
        cut in prop::option::of(any::<usize>()),
    ) {
        let mut d = mutate(&SMALL, &edits);
        if let Some(c) = cut {
            d.truncate(c % (d.len() + 1));
        }
        check_no_panic(&d);
    }
}

proptest! {
    // The test binary is large: fewer cases.
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_rust_binary_never_panics(
        edits in prop::collection::vec((0usize..64, any::<usize>(), any::<u8>()), 1..16),
        cut in prop::option::of(any::<usize>()),
    ) {
        let mut d = mutate(&SELF, &edits);
        if let Some(c) = cut {
            d.truncate(c % (d.len() + 1));
        }
        check_no_panic(&d);
    }
}

#[test]
fn every_prefix_of_the_headers_is_handled() {
    // Exhaustive over the first few KB and around the section header table (end of file).
    let d = &*SMALL;
    for cut in (0..d.len().min(4096)).chain(d.len().saturating_sub(4096)..d.len()) {
        let r = analyze_data(Path::new("t"), &d[..cut]);
        assert!(
            matches!(
                r,
                Err(SymbolsError::Corrupt { .. } | SymbolsError::NotElf { .. })
            ),
            "cut at {cut}: {r:?}"
        );
    }
}

#[test]
fn plain_system_binary() {
    let r = analyze(Path::new(LS)).expect("analyse /bin/ls");
    assert_eq!(r.arch, "x86_64");
    assert_eq!(r.rocksdb_linkage, "none");
    assert!(
        r.build_id.as_ref().is_some_and(|b| b.len() == 40),
        "{:?}",
        r.build_id
    );
    assert!(r.hint.is_some());
    assert_eq!(r.ckb_version, None);
    assert_eq!(r.tier2_count, 0);
    // Every traced function is listed, absent.
    assert_eq!(r.tier1.len(), TRACED.len() + FORGET.len());
    assert_eq!(r.tier1_missing_traced.len(), TRACED.len() + FORGET.len());
}

#[test]
fn own_test_binary_has_symbols() {
    let exe = std::env::current_exe().expect("exe");
    let r = analyze(&exe).expect("analyse the test binary");
    assert!(!r.stripped);
    assert_eq!(r.size_bytes, std::fs::metadata(&exe).expect("meta").len());
}

#[test]
fn bad_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    assert!(matches!(
        analyze(&missing),
        Err(SymbolsError::NotFound { .. })
    ));
    assert!(matches!(
        analyze(dir.path()),
        Err(SymbolsError::IsDirectory { .. })
    ));
    assert!(matches!(
        analyze(Path::new("/etc/passwd")),
        Err(SymbolsError::NotElf { .. })
    ));
    assert!(matches!(
        analyze(Path::new("/dev/null")),
        Err(SymbolsError::NotAFile { .. })
    ));
    let cut = dir.path().join("cut");
    std::fs::write(&cut, &SMALL[..SMALL.len() / 2]).expect("write");
    let e = analyze(&cut).expect_err("truncated");
    assert!(matches!(e, SymbolsError::Corrupt { .. }), "{e:?}");
    assert!(!e.to_string().contains('\n'));
    assert!(matches!(
        analyze_process(999_999_999),
        Err(SymbolsError::Target(TargetError::NoSuchProcess { .. }))
    ));
}

#[test]
fn shared_rocksdb_library_sites() {
    if !Path::new(DEBIAN_ROCKSDB).exists() {
        eprintln!("{DEBIAN_ROCKSDB} not installed; covered by tests/symbols_cli.rs on the testbed");
        return;
    }
    let r = analyze(Path::new(DEBIAN_ROCKSDB)).expect("analyse librocksdb");
    let get = r
        .tier1
        .iter()
        .find(|t| t.name == "rocksdb_get")
        .expect("row");
    assert!(get.present && get.traced);
    assert_eq!(get.op, Some("GET"));
    assert_eq!(get.probe_cost, Some(ProbeCost::Emulated), "{get:?}");
    // The offset points at the bytes that were classified.
    let data = std::fs::read(DEBIAN_ROCKSDB).expect("read");
    let off = get.file_offset.expect("offset") as usize;
    assert_eq!(
        x86::classify(&data[off..off + 15], x86::Emulation::running()).1,
        get.first_insn.clone().expect("insn")
    );
    assert!(r.tier1.iter().filter(|t| t.present).count() > 100);
}

#[test]
fn sites_of_own_process_without_rocksdb() {
    let p = target::process(std::process::id()).expect("self");
    let s = rocksdb_sites(&p).expect("sites");
    assert_eq!(s.linkage, Linkage::None);
    assert!(s.sites.is_empty());
    assert_eq!(s.object, p.exe_open);
}

#[test]
fn mutations_reach_both_outcomes() {
    // Guards the property tests against testing nothing: structural mutations must sometimes
    // still parse (and go through symbol and note handling) and sometimes be rejected.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..400 {
        let edits: Vec<(usize, usize, u8)> = (0..1 + next() % 4)
            .map(|_| ((next() % 64) & !1, next(), next() as u8))
            .collect();
        match analyze_data(Path::new("m"), &mutate(&SMALL, &edits)) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(ok > 20 && err > 20, "ok {ok}, err {err}");
}

#[test]
fn library_search_order() {
    let dirs = library_dirs(
        Path::new(LS),
        &["$ORIGIN/../lib".to_string(), "/opt/x".to_string()],
    );
    let origin = Path::new(LS)
        .canonicalize()
        .expect("canonical")
        .parent()
        .expect("dir")
        .join("../lib");
    assert_eq!(dirs[0], origin);
    assert_eq!(dirs[1], Path::new("/opt/x"));
    assert!(dirs.contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu")));
    let unique: std::collections::HashSet<_> = dirs.iter().collect();
    assert_eq!(unique.len(), dirs.len());
    assert!(is_rocksdb_library("librocksdb.so.7.8"));
    assert!(!is_rocksdb_library("librocksdbx.so"));
}
