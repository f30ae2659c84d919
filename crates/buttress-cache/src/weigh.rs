//! [`Weigh`]: what a cached value (or key) weighs, for the store's byte
//! bound and the oversized-value rule; and the default weigher's choice
//! of how to measure a type.

use std::any::{Any, TypeId};
use std::sync::Arc;

use bytes::Bytes;

/// What a value weighs in bytes: its own size plus the heap data it holds.
///
/// The cache bounds its store by the sum of its entries' weights and does
/// not cache a response heavier than
/// [`max_entry_bytes`](crate::CacheBuilder::max_entry_bytes). The default
/// weigher measures keys and values through this trait when their type is
/// one of those this crate implements it for:
///
/// - [`Bytes`](bytes::Bytes) (its length), `String` and `Vec<u8>` (their
///   capacity), `str` and `[u8]` (behind an `Arc` or a `Box`);
/// - `Arc<T>`, `Box<T>` and `Option<T>` of those, and `Option<Arc<T>>`
///   (an `Arc`'s two counts included, the pointee counted in full however
///   many clones share it);
/// - the integers, `bool`, `char`, `f32`, `f64`, `()`;
/// - `http::Response<B>` for each body `B` above (feature `http`): the
///   body, each header's name and value and its slot in the map (an
///   estimate; extensions are not counted).
///
/// Every other type is weighed by its `size_of` alone, which ignores its
/// heap data: the default weigher cannot see your own implementations,
/// since Rust cannot ask whether a generic type implements a trait, and
/// requiring the trait of every cached type would reject every type that
/// lacks it. For a type of your own, implement `Weigh` and tell the
/// builder with [`weigh_values`](crate::CacheBuilder::weigh_values) (or
/// set any [`weigher`](crate::CacheBuilder::weigher)):
///
/// ```
/// use std::sync::Arc;
/// use buttress_cache::{Cache, Weigh, store::QuickCacheStore};
///
/// struct User {
///     id: u64,
///     name: String,
/// }
///
/// impl Weigh for User {
///     fn weight(&self) -> u64 {
///         // Its own size, and the name's heap block.
///         size_of::<Self>() as u64 + self.name.capacity() as u64
///     }
/// }
///
/// let store = QuickCacheStore::builder(64 << 20).build()?;
/// let cache = Cache::<u64, Arc<User>, _>::builder(store)
///     .weigh_values() // `Arc<User>` weighs its `User` through `Weigh`
///     .build()?;
/// # Ok::<(), buttress_cache::ConfigError>(())
/// ```
pub trait Weigh {
    /// The bytes this value takes: `size_of_val(self)` plus the heap data
    /// it owns or shares.
    fn weight(&self) -> u64;
}

/// `n` as a weight (a `usize` always fits in a `u64` on the platforms
/// Rust supports; saturating otherwise).
#[inline]
fn bytes(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

macro_rules! weigh_by_size {
    ($($t:ty),* $(,)?) => {$(
        impl Weigh for $t {
            #[inline]
            fn weight(&self) -> u64 {
                bytes(size_of::<$t>())
            }
        }
    )*};
}

weigh_by_size!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    bool,
    char,
    f32,
    f64,
    (),
);

impl Weigh for str {
    fn weight(&self) -> u64 {
        bytes(self.len())
    }
}

impl Weigh for [u8] {
    fn weight(&self) -> u64 {
        bytes(self.len())
    }
}

impl Weigh for String {
    fn weight(&self) -> u64 {
        bytes(size_of::<Self>()).saturating_add(bytes(self.capacity()))
    }
}

impl Weigh for Vec<u8> {
    fn weight(&self) -> u64 {
        bytes(size_of::<Self>()).saturating_add(bytes(self.capacity()))
    }
}

/// Its length: a `Bytes` sliced out of a larger buffer keeps that buffer
/// alive, which no `Bytes` method reports.
impl Weigh for Bytes {
    fn weight(&self) -> u64 {
        bytes(size_of::<Self>()).saturating_add(bytes(self.len()))
    }
}

impl<T: Weigh + ?Sized> Weigh for Box<T> {
    fn weight(&self) -> u64 {
        bytes(size_of::<Self>()).saturating_add((**self).weight())
    }
}

/// The pointer, the two reference counts, and the whole pointee: the
/// clones a cache hands out share it, and it is freed only when the last
/// one goes.
impl<T: Weigh + ?Sized> Weigh for Arc<T> {
    fn weight(&self) -> u64 {
        bytes(size_of::<Self>() + 2 * size_of::<usize>()).saturating_add((**self).weight())
    }
}

impl<T: Weigh> Weigh for Option<T> {
    fn weight(&self) -> u64 {
        let heap = self
            .as_ref()
            .map_or(0, |v| v.weight().saturating_sub(bytes(size_of::<T>())));
        bytes(size_of::<Self>()).saturating_add(heap)
    }
}

/// An estimate: the response's own size, its body's heap data, and for
/// each header its name and value and their slot in the map. Extensions
/// are not counted.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<B: Weigh> Weigh for http::Response<B> {
    fn weight(&self) -> u64 {
        let slot = size_of::<(http::HeaderName, http::HeaderValue)>();
        let headers = self.headers().iter().fold(0u64, |sum, (name, value)| {
            sum.saturating_add(bytes(slot + name.as_str().len() + value.len()))
        });
        let body = self.body().weight().saturating_sub(bytes(size_of::<B>()));
        bytes(size_of::<Self>())
            .saturating_add(body)
            .saturating_add(headers)
    }
}

/// How the default weigher measures a value of one type.
pub(crate) type Measure = fn(&dyn Any) -> u64;

/// The [`Weigh`] implementation of `T`, when `T` is one of the types this
/// crate implements it for (see [`Weigh`]); `None` for every other type.
pub(crate) fn measure<T: Any>() -> Option<Measure> {
    known(TypeId::of::<T>())
}

/// Not generic, so the table is compiled once, not once per cached type.
fn known(id: TypeId) -> Option<Measure> {
    macro_rules! known {
        ($($t:ty),* $(,)?) => {$(
            if id == TypeId::of::<$t>() {
                return Some(|v: &dyn Any| v.downcast_ref::<$t>().map_or(0, Weigh::weight));
            }
        )*};
    }
    macro_rules! with_wrappers {
        ($($t:ty),* $(,)?) => {$(
            known!($t, Arc<$t>, Box<$t>, Option<$t>, Option<Arc<$t>>);
        )*};
    }
    with_wrappers!(
        Bytes,
        String,
        Vec<u8>,
        u8,
        u16,
        u32,
        u64,
        u128,
        usize,
        i8,
        i16,
        i32,
        i64,
        i128,
        isize,
        bool,
        char,
        f32,
        f64,
        (),
    );
    known!(
        Arc<str>,
        Box<str>,
        Arc<[u8]>,
        Box<[u8]>,
        Option<Arc<str>>,
        Option<Box<str>>,
        Option<Arc<[u8]>>,
        Option<Box<[u8]>>,
    );
    #[cfg(feature = "http")]
    with_wrappers!(
        http::Response<Bytes>,
        http::Response<String>,
        http::Response<Vec<u8>>,
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured<T: Any>(value: &T) -> Option<u64> {
        measure::<T>().map(|m| m(value))
    }

    #[test]
    fn heap_data_counts() {
        let big = Bytes::from(vec![0u8; 10 << 20]);
        assert_eq!(measured(&big), Some(32 + (10 << 20)));
        let s = String::with_capacity(100);
        assert_eq!(measured(&s), Some(24 + 100));
        let arc: Arc<str> = Arc::from("hello");
        assert_eq!(measured(&arc), Some(16 + 16 + 5));
        let shared = Arc::new(Bytes::from_static(b"0123456789"));
        assert_eq!(measured(&shared), Some(8 + 16 + 32 + 10));
        assert_eq!(
            measured(&Some(Arc::new(vec![0u8; 7]))),
            Some(8 + 16 + 24 + 7)
        );
        assert_eq!(measured(&None::<Arc<String>>), Some(8));
        assert_eq!(measured(&7u64), Some(8));
    }

    #[test]
    fn other_types_are_not_measured() {
        struct Mine;
        assert!(measure::<Mine>().is_none());
        assert!(measure::<Arc<Mine>>().is_none());
        assert!(measure::<(u64, String)>().is_none());
    }

    #[cfg(feature = "http")]
    #[test]
    fn responses_weigh_their_body_and_headers() {
        let response = http::Response::builder()
            .header("content-type", "text/plain")
            .body(Bytes::from(vec![0u8; 1000]))
            .unwrap();
        let weight = measured(&response).unwrap();
        let bare = size_of::<http::Response<Bytes>>() as u64 + 1000;
        assert!(weight > bare + 22, "{weight}");
        assert!(weight < bare + 22 + 200, "{weight}");
    }
}
