//! Reading names back from JSON. The live model names operations, roles, states and families
//! with `&'static str` (they come from fixed tables, so no allocation per event); a report read
//! back from NDJSON gets the same names interned: each distinct string is leaked once, so the
//! memory is bounded by the number of distinct names, not by the number of reports.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Mutex, OnceLock},
};

use serde::{Deserialize, Deserializer};

/// A name from a fixed table. An alias, not a reference in the field's type, so that serde's
/// derive does not take it for a string borrowed from the input.
pub type Name = &'static str;

/// The one `&'static str` for `s`.
pub fn intern(s: &str) -> &'static str {
    static SET: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = SET
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = set.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// `#[serde(deserialize_with = "name")]` for a `&'static str` field.
pub fn name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    Ok(intern(&s))
}

/// The same for an `Option<&'static str>` field.
pub fn opt_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.as_deref().map(intern))
}

/// The same for a map keyed by `&'static str`.
pub fn name_map<'de, D, V>(d: D) -> Result<BTreeMap<&'static str, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    let m = BTreeMap::<String, V>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (intern(&k), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_returns_one_pointer_per_name() {
        let a = intern(&String::from("GET"));
        let b = intern(&String::from("GET"));
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_ne!(intern("PUT").as_ptr(), a.as_ptr());
    }
}
