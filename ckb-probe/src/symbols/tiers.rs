//! Tier 2 and tier 3: the Rust functions of CKB's network, sync, chain, storage and tx-pool
//! crates, graded by how stable an attach point they are.
//!
//! # The rule
//! A function symbol "belongs to the crates of interest" when its demangled name (hash
//! removed) mentions a path starting with one of [`CRATES`] (`tentacle::`, `ckb_network::`,
//! `ckb_sync::`, `ckb_chain::`, `ckb_store::`, `ckb_db::`, `ckb_tx_pool::`).
//!
//! It is **tier 2** (cross-crate public surface: callable by name from another crate, with
//! one machine-code body) when all of these hold:
//! 1. its name is a plain path `crate::module::…::name` starting with one of [`CRATES`], or a
//!    trait method `<Type as Trait>::name` whose `Type` is a plain path starting with one of
//!    [`CRATES`];
//! 2. no path component is compiler-generated: no `{` anywhere (`{{closure}}`, `{{constant}}`,
//!    `{{vtable.shim}}`, `{shim:vtable#0}`, v0's `{closure#0}`);
//! 3. no generic arguments or parameters outside the trait name: no `<` in the plain path, in
//!    `Type`, or after the `>::` of a trait method (`Foo<T>::new`, v0's `f::<u8>` are generic).
//!    Legacy mangling's impl-block components `<impl Foo>` / `<impl Trait for Foo>` (an impl
//!    written in another module than its type) do not count when they hold no `<` themselves;
//!    v0's inherent form `<crate::Foo>::f` is read like `crate::Foo::f`;
//! 4. exactly one defined function symbol has this demangled name. Legacy mangling prints a
//!    monomorphised generic function without its arguments, so several instances share one
//!    name and differ only in the hash: more than one symbol means a generic.
//!
//! Every other function that belongs to those crates is **tier 3**: closures, async state
//! machines' `{{closure}}` bodies, shims, generic instances, `core::ptr::drop_in_place<…>`
//! and other foreign generics instantiated for their types, and trait impls on generic types.
//! Private functions that meet the rule are tier 2 too (symbols do not carry visibility); they
//! are still single, stable bodies, which is what an uprobe needs.

use std::collections::HashMap;

use memchr::memmem;

/// Crate paths whose functions are graded (with the `::` that ends a crate name).
pub const CRATES: [&str; 7] = [
    "tentacle::",
    "ckb_network::",
    "ckb_sync::",
    "ckb_chain::",
    "ckb_store::",
    "ckb_db::",
    "ckb_tx_pool::",
];

/// Cheap test on a mangled name before demangling: does it mention one of the crates?
/// Legacy (`_ZN…11ckb_network…`) and v0 (`_R…11ckb_network…`) both embed the crate name raw.
pub struct Prefilter {
    ckb: memmem::Finder<'static>,
    tentacle: memmem::Finder<'static>,
}

const CKB_TAILS: [&[u8]; 6] = [b"network", b"sync", b"chain", b"store", b"db", b"tx_pool"];

impl Default for Prefilter {
    fn default() -> Self {
        Prefilter {
            ckb: memmem::Finder::new(b"ckb_"),
            tentacle: memmem::Finder::new(b"tentacle"),
        }
    }
}

impl Prefilter {
    pub fn wants(&self, mangled: &[u8]) -> bool {
        if !(mangled.starts_with(b"_ZN") || mangled.starts_with(b"_R")) {
            return false;
        }
        if self.tentacle.find(mangled).is_some() {
            return true;
        }
        self.ckb.find_iter(mangled).any(|at| {
            let tail = &mangled[at + 4..];
            CKB_TAILS.iter().any(|t| tail.starts_with(t))
        })
    }
}

/// Demangles a Rust symbol without its hash; `None` for anything that is not Rust.
pub fn demangle(mangled: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(mangled).ok()?;
    let d = rustc_demangle::try_demangle(s).ok()?;
    Some(format!("{d:#}"))
}

/// Whether `s` starts with one of the crate paths.
fn starts_with_crate(s: &str) -> bool {
    CRATES.iter().any(|c| s.starts_with(c))
}

/// Whether `s` mentions one of the crate paths at an identifier boundary.
pub fn mentions_crate(s: &str) -> bool {
    let b = s.as_bytes();
    CRATES.iter().any(|c| {
        s.match_indices(c).any(|(at, _)| {
            at == 0 || !matches!(b[at - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b':')
        })
    })
}

/// Splits `<Type as Trait>::rest` into `(Type, Some(Trait), rest)`, and v0's inherent
/// `<Type>::rest` into `(Type, None, rest)`.
fn split_qualified(s: &str) -> Option<(&str, Option<&str>, &str)> {
    let mut depth = 0usize;
    let mut close = None;
    for (i, ch) in s.char_indices() {
        match ch {
            '<' => depth += 1,
            '>' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    let inner = s.get(1..close)?;
    let rest = s.get(close + 1..)?.strip_prefix("::")?;
    // " as " at bracket depth 0 inside the brackets.
    let mut depth = 0usize;
    for (i, ch) in inner.char_indices() {
        match ch {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 && inner[i..].starts_with(" as ") => {
                return Some((&inner[..i], Some(&inner[i + 4..]), rest));
            }
            _ => {}
        }
    }
    Some((inner, None, rest))
}

/// Removes legacy mangling's impl-block components (`::<impl Foo>::`, `::<impl Tr for Foo>::`)
/// whose types carry no generics: they only say which module an impl block sits in.
fn drop_plain_impl_blocks(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("<impl ") {
        let after = &rest[at + 6..];
        match after.find(['<', '>']) {
            Some(end) if after.as_bytes()[end] == b'>' => {
                out.push_str(&rest[..at]);
                out.push_str("impl");
                rest = &after[end + 1..];
            }
            // A generic impl block: keep it, the `<` makes the name tier 3.
            _ => {
                out.push_str(&rest[..at + 6]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rules 1 to 3 of the module documentation (rule 4 needs the whole symbol table).
pub fn tier2_shape(name: &str) -> bool {
    if name.contains('{') {
        return false;
    }
    if name.starts_with('<') {
        match split_qualified(name) {
            Some((ty, _trait, rest)) => {
                starts_with_crate(ty)
                    && !ty.contains('<')
                    && !drop_plain_impl_blocks(rest).contains('<')
            }
            None => false,
        }
    } else {
        starts_with_crate(name) && !drop_plain_impl_blocks(name).contains('<')
    }
}

/// The graded functions: tier 2 and tier 3 names, sorted and without duplicates.
#[derive(Debug, Default)]
pub struct Tiers {
    pub tier2: Vec<String>,
    pub tier3: Vec<String>,
}

/// Grades the mangled names of defined function symbols (already prefiltered, one entry per
/// symbol).
pub fn grade<'a>(mangled: impl IntoIterator<Item = &'a [u8]>) -> Tiers {
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in mangled {
        if let Some(d) = demangle(m)
            && mentions_crate(&d)
        {
            *count.entry(d).or_default() += 1;
        }
    }
    let mut t = Tiers::default();
    for (name, n) in count {
        if n == 1 && tier2_shape(&name) {
            t.tier2.push(name);
        } else {
            t.tier3.push(name);
        }
    }
    t.tier2.sort_unstable();
    t.tier3.sort_unstable();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefilter() {
        let p = Prefilter::default();
        assert!(p.wants(b"_ZN11ckb_network7network12NetworkState3new17h0123456789abcdefE"));
        assert!(p.wants(b"_ZN8tentacle7service7Service3run17h0123456789abcdefE"));
        assert!(!p.wants(b"_ZN9ckb_types4core3foo17h0123456789abcdefE"));
        assert!(!p.wants(b"rocksdb_get"));
        assert!(!p.wants(b"ckb_network"));
    }

    #[test]
    fn demangles_legacy_without_hash() {
        let d = demangle(b"_ZN11ckb_network7network12NetworkState3new17h0123456789abcdefE");
        assert_eq!(
            d.as_deref(),
            Some("ckb_network::network::NetworkState::new")
        );
        // LTO's local copies keep a suffix that must not leak into the name.
        let d =
            demangle(b"_ZN11ckb_network7network12NetworkState3new17h0123456789abcdefE.llvm.123");
        assert_eq!(
            d.as_deref(),
            Some("ckb_network::network::NetworkState::new")
        );
        assert_eq!(demangle(b"_ZN7rocksdb6DBImpl3GetEv"), None);
        assert_eq!(demangle(b"\xff\xfe"), None);
    }

    #[test]
    fn shapes() {
        assert!(tier2_shape("ckb_network::network::NetworkState::new"));
        assert!(tier2_shape(
            "<ckb_network::network::EventHandler as tentacle::service::ServiceHandle>::handle_event"
        ));
        assert!(tier2_shape(
            "<ckb_store::db::ChainDB as core::convert::From<ckb_db::RocksDB>>::from"
        ));
        assert!(!tier2_shape(
            "ckb_sync::synchronizer::Synchronizer::poll::{{closure}}"
        ));
        assert!(!tier2_shape("ckb_sync::f::{closure#0}"));
        assert!(!tier2_shape("ckb_db::db::RocksDB::get::<u32>"));
        assert!(!tier2_shape("tentacle::channel::Sender<T>::send"));
        assert!(!tier2_shape(
            "<tentacle::channel::Sender<T> as core::clone::Clone>::clone"
        ));
        assert!(!tier2_shape("core::ptr::drop_in_place<ckb_network::Peer>"));
        assert!(!tier2_shape("<alloc::vec::Vec<u8> as ckb_db::Trait>::f"));
        assert!(!tier2_shape(
            "<ckb_db::X as core::fmt::Debug>::fmt::{{closure}}"
        ));
        assert!(!tier2_shape("<broken"));
        assert!(tier2_shape(
            "ckb_network::peer_store::peer_store_db::<impl ckb_network::peer_store::anchors::Anchors>::load"
        ));
        assert!(tier2_shape(
            "ckb_sync::x::<impl core::fmt::Debug for ckb_sync::X>::fmt"
        ));
        assert!(!tier2_shape("ckb_sync::x::<impl ckb_sync::Foo<T>>::new"));
        assert!(!tier2_shape(
            "ckb_tx_pool::process::<impl ckb_tx_pool::service::TxPoolService>::clear_pool::{{closure}}"
        ));
        assert!(tier2_shape("<ckb_db::RocksDB>::get"));
        assert!(!tier2_shape("<ckb_db::RocksDB>::get::<u8>"));
        assert_eq!(drop_plain_impl_blocks("a::<impl b::C>::d"), "a::impl::d");
        assert_eq!(
            drop_plain_impl_blocks("a::<impl b::C<T>>::d"),
            "a::<impl b::C<T>>::d"
        );
        assert_eq!(drop_plain_impl_blocks("<impl "), "<impl ");
    }

    #[test]
    fn mentions() {
        assert!(mentions_crate(
            "core::ptr::drop_in_place<ckb_network::Peer>"
        ));
        assert!(mentions_crate("ckb_db::x"));
        assert!(!mentions_crate("ckb_db_schema::x"));
        assert!(!mentions_crate("my_ckb_db::x"));
        assert!(!mentions_crate("foo::ckb_db::x"));
    }

    #[test]
    fn grading_counts_generic_instances() {
        let syms: Vec<&[u8]> = vec![
            b"_ZN11ckb_network7network12NetworkState3new17h0123456789abcdefE",
            // Same path, two hashes: a generic function instantiated twice.
            b"_ZN6ckb_db2db7RocksDB3get17h0123456789abcdefE",
            b"_ZN6ckb_db2db7RocksDB3get17hfedcba9876543210E",
            b"_ZN8ckb_sync4sync4poll28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE",
            b"_ZN9ckb_types1x1y17h0123456789abcdefE",
        ];
        let t = grade(syms);
        assert_eq!(t.tier2, ["ckb_network::network::NetworkState::new"]);
        assert_eq!(
            t.tier3,
            [
                "ckb_db::db::RocksDB::get",
                "ckb_sync::sync::poll::{{closure}}"
            ]
        );
    }
}
