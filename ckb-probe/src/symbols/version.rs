//! Which CKB release a binary is, from strings in its read-only data.
//!
//! CKB builds its version at run time from `CARGO_PKG_VERSION_{MAJOR,MINOR,PATCH}` parsed
//! separately (ckb's `src/main.rs::get_version`), so "0.210.0" is not a literal in the binary.
//! What is: the source path of that same `main.rs`, kept for the `.expect()` panic locations
//! of those parses. A build of the crates.io package (`cargo install ckb`) records it as
//! `…/ckb-0.210.0/src/main.rs`. As a fallback, a literal `ckb 0.210.0` is accepted.

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

/// The CKB version recorded in `rodata`, if the binary is CKB.
pub fn detect(rodata: &[&[u8]]) -> Option<String> {
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
    let literal = memmem::Finder::new(b"ckb ");
    for data in rodata {
        for at in literal.find_iter(data) {
            if at > 0 && (data[at - 1].is_ascii_alphanumeric() || data[at - 1] == b'_') {
                continue;
            }
            if let Some((v, _)) = semver_prefix(&data[at + 4..]) {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_registry_path() {
        let d: &[u8] =
            b"xx/root/.cargo/registry/src/index.crates.io-1949/ckb-0.210.0/src/main.rsCARGO";
        assert_eq!(detect(&[d]).as_deref(), Some("0.210.0"));
        let d: &[u8] = b"/ckb-bin-1.2.0/src/lib.rs /ckb-0.211.0-rc1/src/main.rs";
        assert_eq!(detect(&[d]).as_deref(), Some("0.211.0-rc1"));
    }

    #[test]
    fn from_literal() {
        assert_eq!(detect(&[b"\0ckb 0.205.0 ( )"]).as_deref(), Some("0.205.0"));
        assert_eq!(detect(&[b"libckb 0.1.0"]), None);
        assert_eq!(detect(&[b"ckb-network-1.2.3/src/main.rs", b"ckb x"]), None);
        assert_eq!(detect(&[b"/ckb-1.2"]), None);
    }
}
