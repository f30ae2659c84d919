//! RFC 9111's rules as functions of header fields and times: whether a
//! response may be stored (§3), how long it stays fresh (§4.2.1, with the
//! heuristic of §4.2.2), how old it is (§4.2.3), and whether a stored
//! response may answer a request without revalidation (§4.2.4, §5.2.1,
//! RFC 5861), what it is stored under (§2, §4.1), how a `304` updates it
//! (§4.3.4) and what an unsafe request invalidates (§4.4). No I/O and no clock: the caller passes the times in, so the
//! rules are tested alone and an HTTP cache (in process, or sharing one
//! store across instances) applies them the same way.
//!
//! ```
//! use std::time::Duration;
//! use buttress_http::header::CacheControl;
//! use buttress_http::semantics::{Reuse, Semantics};
//! use http::{HeaderMap, HeaderValue, Method, StatusCode};
//!
//! let shared = Semantics::shared();
//! let mut response = HeaderMap::new();
//! response.insert("cache-control", HeaderValue::from_static("public, max-age=60, s-maxage=300"));
//! assert!(shared.storable(&Method::GET, &HeaderMap::new(), StatusCode::OK, &response));
//! let lifetime = shared.freshness_lifetime(StatusCode::OK, &response, std::time::SystemTime::now());
//! assert_eq!(lifetime, Duration::from_secs(300)); // s-maxage, in a shared cache
//! let no_directives = CacheControl::default();
//! let cc = CacheControl::parse(response.get_all("cache-control"));
//! assert_eq!(shared.reuse(&no_directives, &cc, lifetime, Duration::from_secs(299)), Reuse::Fresh);
//! ```

mod freshness;
mod key;
mod storable;
mod update;

pub use freshness::{Reuse, Timing};
pub use key::{VaryKey, cache_key};
pub use update::{freshen, freshens, invalidated_keys, strip_hop_by_hop};

/// Which kind of cache applies the rules (RFC 9111 §1): a shared cache
/// (a proxy, a CDN, a gateway's cache serving many users) or a private
/// one (a single user's client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Serves many users: honours `private`, `s-maxage`,
    /// `proxy-revalidate`, and the `Authorization` rule of §3.5.
    Shared,
    /// Serves one user.
    Private,
}

/// The rules of one cache: its [`Mode`] and its storage choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Semantics {
    mode: Mode,
    store_set_cookie: bool,
}

impl Semantics {
    /// A shared cache's rules; responses with `Set-Cookie` are not stored
    /// (one user's cookie must not reach another).
    #[must_use]
    pub const fn shared() -> Self {
        Self {
            mode: Mode::Shared,
            store_set_cookie: false,
        }
    }

    /// A private cache's rules.
    #[must_use]
    pub const fn private() -> Self {
        Self {
            mode: Mode::Private,
            store_set_cookie: true,
        }
    }

    /// Whether a shared cache may store responses that set a cookie
    /// (default: no; a private cache always may).
    #[must_use]
    pub const fn store_set_cookie(mut self, on: bool) -> Self {
        self.store_set_cookie = on || matches!(self.mode, Mode::Private);
        self
    }

    /// The mode.
    #[must_use]
    pub const fn mode(&self) -> Mode {
        self.mode
    }

    const fn shared_mode(&self) -> bool {
        matches!(self.mode, Mode::Shared)
    }
}
