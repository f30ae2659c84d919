//! [`Name`]: the name of one layer instance, and [`Registration`]: the
//! claim that keeps two live instances from sharing one.

use std::collections::HashSet;
use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::publish::{Publish, Slot, registry};

/// The name of one layer instance: the value of the `name` label on its
/// metrics, the `name` field on its tracing events, and the instance a
/// rejection names.
///
/// Names are interned: a `Name` is a `&'static str`, so copying one, or
/// putting it in a rejection or a label, allocates nothing. Each distinct
/// string is stored once for the life of the process (a program names a
/// bounded number of layers; do not build names from request data).
///
/// A layer built without a name gets [`Name::caller`]: the source
/// location that built it, stable from one run of the same code to the
/// next, never a name shared by unrelated layers.
///
/// ```
/// use buttress_core::telemetry::Name;
///
/// let a = Name::new("payments");
/// assert_eq!(a.as_str(), "payments");
/// assert_eq!(a, Name::new("payments"));
/// assert_eq!(a, "payments");
/// let here = Name::caller(); // e.g. "src/main.rs:9"
/// assert!(here.as_str().contains(".rs:"), "{here}");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(&'static str);

fn interned() -> &'static Mutex<HashSet<&'static str>> {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(|| Mutex::new(HashSet::new()))
}

impl Name {
    /// The name `name`, interned.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let mut names = interned()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = names.get(name) {
            return Self(s);
        }
        let s: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(s);
        Self(s)
    }

    /// The caller's source location, `file:line`: the name a layer gets
    /// when none is set. Layer constructors are `#[track_caller]`, so it
    /// is the line in your code that built the layer.
    #[must_use]
    #[track_caller]
    pub fn caller() -> Self {
        let at = Location::caller();
        Self::new(&format!("{}:{}", at.file(), at.line()))
    }

    /// The name as a string.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Self {
        Self::new(&name)
    }
}

/// One live layer instance's claim on its name, and the link through which
/// [`flush`](super::flush) and the background publisher reach its counts.
///
/// While a registration lives, no other instance of the same kind gets the
/// same name: a second live `"payments"` breaker is named `"payments#2"`
/// (so two instances never publish into one series and overwrite each
/// other's counts). Dropping the registration frees the name. A layer
/// keeps its registration in its shared state, so the name is held exactly
/// as long as some clone of the layer is alive.
pub struct Registration {
    kind: &'static str,
    name: Name,
    slot: Arc<Slot>,
}

impl Registration {
    /// Claims `wanted` for a layer of kind `kind` (`"breaker"`, `"limit"`,
    /// …): the name itself when no live instance of that kind holds it,
    /// else the first free `wanted#2`, `wanted#3`, …
    #[must_use]
    pub fn new(kind: &'static str, wanted: Name) -> Self {
        super::publish::registered();
        let slot = Arc::new(Slot::new());
        let mut entries = registry();
        entries.retain(|e| e.slot.strong_count() > 0);
        let taken = |n: Name| {
            entries
                .iter()
                .any(|e| e.kind == kind && e.name == n && e.slot.strong_count() > 0)
        };
        let mut name = wanted;
        let mut n = 2;
        while taken(name) {
            name = Name::new(&format!("{wanted}#{n}"));
            n += 1;
        }
        entries.push(super::publish::Entry {
            kind,
            name,
            slot: Arc::downgrade(&slot),
        });
        Self { kind, name, slot }
    }

    /// The name this instance got.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }

    /// The layer kind it was registered as.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        self.kind
    }

    /// Where the instance's counts come from: `source` is asked to
    /// [`publish`](Publish::publish) on every flush while it is alive.
    /// Call once; later calls are ignored.
    pub fn attach(&self, source: Weak<dyn Publish>) {
        self.slot.attach(source);
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_duplicates_get_suffixes_and_dropped_names_come_back() {
        let a = Registration::new("test-kind", Name::new("dup"));
        let b = Registration::new("test-kind", Name::new("dup"));
        let other_kind = Registration::new("test-other", Name::new("dup"));
        assert_eq!(a.name().as_str(), "dup");
        assert_eq!(b.name().as_str(), "dup#2");
        assert_eq!(other_kind.name().as_str(), "dup", "kinds do not collide");
        drop(a);
        let c = Registration::new("test-kind", Name::new("dup"));
        assert_eq!(
            c.name().as_str(),
            "dup",
            "a dropped instance frees its name"
        );
        let d = Registration::new("test-kind", Name::new("dup"));
        assert_eq!(d.name().as_str(), "dup#3");
    }

    #[test]
    fn names_intern() {
        let a = Name::new(&String::from("x-interned"));
        let b = Name::new("x-interned");
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
