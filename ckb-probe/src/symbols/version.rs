//! Which CKB release a binary is.
//!
//! CKB has no version string in its binary: `ckb`'s `src/main.rs::get_version` parses
//! `CARGO_PKG_VERSION_{MAJOR,MINOR,PATCH}` into a `ckb_build_info::Version { major: u8,
//! minor: u8, patch: u16, .. }`, and rustc folds those parses into constants. Two traces
//! remain, tried in this order:
//! 1. the source path `…/ckb-0.210.0/src/main.rs`, when a panic location of those parses
//!    survives (unoptimised builds of the crates.io package);
//! 2. the constant itself in `ckb::main`: rustc lays the three integers out as one 4-byte
//!    group (`patch` u16, then `major` u8, then `minor` u8, by descending alignment) and
//!    stores it with one `movl $imm32, disp(%rsp)`. CKB 0.210.0 (`cargo install`, rustc
//!    1.95): `c7 44 24 60 00 00 00 d2` = `movl $0xd2000000,0x60(%rsp)`.
//!
//! The second relies on codegen details (field order, one merged store, `ckb::main` kept as
//! a symbol); when it does not match, the version is reported as unknown rather than guessed.

use memchr::memmem;

/// Parses `MAJOR.MINOR.PATCH[-PRE]` at the start of `s`; returns it and its length.
fn semver_prefix(s: &[u8]) -> Option<(String, usize)> {
    let mut i = 0;
    for part in 0..3 {
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 6 {
            return None;
        }
        if part < 2 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    if s.get(i) == Some(&b'-') {
        let start = i;
        i += 1;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.') {
            i += 1;
        }
        if i == start + 1 {
            i = start;
        }
    }
    Some((String::from_utf8_lossy(&s[..i]).into_owned(), i))
}

/// Trace 1: `/ckb-X.Y.Z/src/main.rs` in read-only data.
fn from_source_path(rodata: &[&[u8]]) -> Option<String> {
    let path = memmem::Finder::new(b"/ckb-");
    for data in rodata {
        for at in path.find_iter(data) {
            let rest = &data[at + 5..];
            if let Some((v, len)) = semver_prefix(rest)
                && rest[len..].starts_with(b"/src/main.rs")
            {
                return Some(v);
            }
        }
    }
    None
}

/// Trace 2: the first `movl $imm32, disp8/disp32(%rsp)` in `ckb::main` that decodes to a
/// plausible version.
fn from_main_code(code: &[u8]) -> Option<String> {
    // c7 44 24 d8 imm32 | c7 84 24 d32 imm32
    let forms: [(&[u8], usize); 2] = [(&[0xc7, 0x44, 0x24], 1), (&[0xc7, 0x84, 0x24], 4)];
    for i in 0..code.len() {
        for (prefix, disp) in forms {
            if !code[i..].starts_with(prefix) {
                continue;
            }
            let at = i + prefix.len() + disp;
            let Some(imm) = code.get(at..at + 4) else {
                continue;
            };
            let patch = u16::from_le_bytes([imm[0], imm[1]]);
            let (major, minor) = (imm[2], imm[3]);
            // CKB releases are 0.x.y so far; a large major or a zero version is a different
            // constant (a length, a flag set).
            if major <= 9 && (major, minor) != (0, 0) && patch < 1000 {
                return Some(format!("{major}.{minor}.{patch}"));
            }
        }
    }
    None
}

/// The CKB version recorded in the binary, if it is CKB and one of the traces is found.
pub fn detect(rodata: &[&[u8]], ckb_main: Option<&[u8]>) -> Option<String> {
    from_source_path(rodata).or_else(|| ckb_main.and_then(from_main_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_registry_path() {
        let d: &[u8] =
            b"xx/root/.cargo/registry/src/index.crates.io-1949/ckb-0.210.0/src/main.rsCARGO";
        assert_eq!(detect(&[d], None).as_deref(), Some("0.210.0"));
        let d: &[u8] = b"/ckb-bin-1.2.0/src/lib.rs /ckb-0.211.0-rc1/src/main.rs";
        assert_eq!(detect(&[d], None).as_deref(), Some("0.211.0-rc1"));
        assert_eq!(detect(&[b"ckb-network-1.2.3/src/main.rs"], None), None);
        assert_eq!(detect(&[b"/ckb-1.2"], None), None);
    }

    #[test]
    fn from_main_immediate() {
        // CKB 0.210.0's `ckb::main` prologue.
        let code = [
            0x48, 0x83, 0xec, 0x68, 0xc7, 0x44, 0x24, 0x60, 0x00, 0x00, 0x00, 0xd2, 0x48, 0xc7,
        ];
        assert_eq!(detect(&[], Some(&code)).as_deref(), Some("0.210.0"));
        // 0.205.3 through the disp32 form.
        let code = [0xc7, 0x84, 0x24, 0x10, 0x01, 0, 0, 0x03, 0x00, 0x00, 0xcd];
        assert_eq!(detect(&[], Some(&code)).as_deref(), Some("0.205.3"));
        // A zero store or a truncated instruction is not a version.
        assert_eq!(
            detect(&[], Some(&[0xc7, 0x44, 0x24, 0x60, 0, 0, 0, 0])),
            None
        );
        assert_eq!(detect(&[], Some(&[0xc7, 0x44, 0x24, 0x60, 0, 0])), None);
        assert_eq!(detect(&[], None), None);
    }
}
