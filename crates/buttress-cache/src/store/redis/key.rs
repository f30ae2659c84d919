//! Redis keys: `<namespace>:v<schema version>:<the key as JSON>`.
//!
//! Why JSON: it is readable in `redis-cli` (`prices:v1:42`,
//! `prices:v1:"sku-7"`, `prices:v1:["acme",42]`), any other program can
//! compute it, and for one key type two different keys always give two
//! different texts (strings are quoted and escaped, sequences bracketed),
//! as long as the type's `Serialize` keeps every field that `Eq` compares
//! (a derived one does).
//!
//! Why two stores never read each other's keys: a namespace is made of
//! ASCII letters, digits and `_ . : -` ([`valid_namespace`]), and no JSON
//! text starts with a letter other than `t`, `f`, `n`, with `_`, `.` or
//! `:`, or continues after a number, `true`, `false` or `null`. So the
//! rest of one store's key, after another store's prefix, is never a JSON
//! text: keys of different namespaces or schema versions cannot collide.

use serde::Serialize;

/// Whether `ns` may be a namespace: not empty, ASCII letters, digits and
/// `_ . : -` only.
pub(crate) fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The prefix every key of a store starts with.
pub(crate) fn prefix(namespace: &str, schema_version: u32) -> Box<[u8]> {
    format!("{namespace}:v{schema_version}:")
        .into_bytes()
        .into_boxed_slice()
}

/// The Redis key of `key` under `prefix`, or `None` if `key` does not
/// serialize (a map with non-string keys, a failing `Serialize`).
pub(crate) fn encode<K: Serialize + ?Sized>(prefix: &[u8], key: &K) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(prefix.len() + 24);
    out.extend_from_slice(prefix);
    serde_json::to_writer(&mut out, key).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_well_and_differ() {
        let p = prefix("prices", 1);
        let text = |k: &dyn erased::Key| String::from_utf8(k.encode(&p)).unwrap();
        assert_eq!(text(&42u64), "prices:v1:42");
        assert_eq!(text(&"sku-7"), "prices:v1:\"sku-7\"");
        assert_eq!(text(&("acme", 42u32)), "prices:v1:[\"acme\",42]");
        // Strings that would collide if not quoted and escaped.
        assert_ne!(text(&"a\",\"b"), text(&("a", "b")));
        assert_ne!(text(&("a:b", "c")), text(&("a", "b:c")));
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(valid_namespace("app:prices_v2.eu-west"));
        for bad in ["", "a b", "a\"", "a{", "ü", "a\n"] {
            assert!(!valid_namespace(bad), "{bad:?}");
        }
    }

    /// Object-safe key encoding for the table above.
    mod erased {
        pub(super) trait Key {
            fn encode(&self, prefix: &[u8]) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Key for T {
            fn encode(&self, prefix: &[u8]) -> Vec<u8> {
                super::encode(prefix, self).unwrap()
            }
        }
    }
}
