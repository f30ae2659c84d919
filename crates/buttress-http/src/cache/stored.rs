//! What the HTTP cache stores: [`Variants`], the responses stored under
//! one primary key, each with its secondary key (`Vary`) and the times
//! RFC 9111 judges it by.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use buttress_core::time::Instant;
use bytes::Bytes;
use http::header::{AGE, HeaderValue};
use http::{HeaderMap, Response, StatusCode, Version};

use crate::header::{CacheControl, MAX_DELTA_SECONDS};
use crate::semantics::VaryKey;

/// One stored response (RFC 9111 §3): its status, fields (hop-by-hop
/// fields removed), body, secondary key, and its age and freshness
/// lifetime as received.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) vary: VaryKey,
    /// The `Date` of the response, for "newest Date wins" (§4.1).
    pub(crate) date: Option<SystemTime>,
    /// `corrected_initial_age` (§4.2.3).
    pub(crate) initial_age: Duration,
    /// When it was received, on tokio's clock (the resident time).
    pub(crate) stored_at: Instant,
    /// `freshness_lifetime` (§4.2.1).
    pub(crate) lifetime: Duration,
    /// The directives it is judged by: `Cache-Control`, or the targeted
    /// field the cache honours when the response has a valid one.
    pub(crate) cc: CacheControl,
}

impl Stored {
    /// `current_age` (§4.2.3) at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at))
    }

    /// The time until the response turns stale, as of when it was stored.
    pub(crate) fn fresh_for(&self) -> Duration {
        self.lifetime.saturating_sub(self.initial_age)
    }

    /// What it weighs in a store (bytes, roughly).
    pub(crate) fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + 128) as u64
    }

    /// The stored response as served at `age`: its fields, an `Age`
    /// (§5.1), and its body unless `head`.
    pub(crate) fn respond(&self, age: Duration, head: bool) -> Response<Bytes> {
        let mut response = Response::new(if head {
            Bytes::new()
        } else {
            self.body.clone()
        });
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers.clone();
        let secs = age.as_secs().min(MAX_DELTA_SECONDS);
        response.headers_mut().insert(AGE, HeaderValue::from(secs));
        response
    }
}

/// The responses stored under one primary key (method and effective
/// URI), one per secondary key (`Vary`), newest first. This is the value
/// type of the [`Store`](buttress_cache::store::Store) an
/// [`HttpCache`](crate::HttpCache) writes to; a clone is one reference
/// count.
#[derive(Clone, Debug, Default)]
pub struct Variants(pub(crate) Arc<Vec<Arc<Stored>>>);

impl Variants {
    /// How many responses are stored under the key.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no response is stored under the key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored response that answers `request` (§4.1): among those
    /// whose `Vary` fields match, the one with the newest `Date` (the
    /// most recently stored on a tie).
    pub(crate) fn select(&self, request: &HeaderMap) -> Option<Arc<Stored>> {
        self.0
            .iter()
            .filter(|s| s.vary.matches(request))
            .max_by(|a, b| a.date.cmp(&b.date).then(a.stored_at.cmp(&b.stored_at)))
            .cloned()
    }

    /// These variants with `new` in place of any with its secondary key,
    /// at most `max` of them (the oldest stored dropped first).
    pub(crate) fn with(&self, new: Arc<Stored>, max: usize) -> Self {
        let mut all: Vec<Arc<Stored>> = Vec::with_capacity(self.0.len() + 1);
        all.push(new);
        for s in self.0.iter() {
            if s.vary != all[0].vary {
                all.push(Arc::clone(s));
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.stored_at));
        all.truncate(max.max(1));
        Self(Arc::new(all))
    }

    /// These variants without the one stored as `old`.
    pub(crate) fn without(&self, old: &Arc<Stored>) -> Self {
        Self(Arc::new(
            self.0
                .iter()
                .filter(|s| !Arc::ptr_eq(s, old))
                .cloned()
                .collect(),
        ))
    }

    /// The total weight and the latest instant any variant is still
    /// useful (fresh, or stale within its windows plus `retain`).
    pub(crate) fn bounds(&self, retain: Duration) -> (u32, Instant, Instant) {
        let mut weight = 0u64;
        let mut fresh_until: Option<Instant> = None;
        let mut keep_until: Option<Instant> = None;
        for s in self.0.iter() {
            weight = weight.saturating_add(s.weight());
            let fresh = later(s.stored_at, s.fresh_for());
            let windows =
                s.cc.stale_while_revalidate
                    .unwrap_or_default()
                    .max(s.cc.stale_if_error.unwrap_or_default())
                    .max(retain);
            let keep = later(fresh, windows);
            fresh_until = Some(fresh_until.map_or(fresh, |f| f.max(fresh)));
            keep_until = Some(keep_until.map_or(keep, |k| k.max(keep)));
        }
        let now = Instant::now();
        (
            u32::try_from(weight).unwrap_or(u32::MAX),
            fresh_until.unwrap_or(now),
            keep_until.unwrap_or(now),
        )
    }
}

/// `at + d`, capped at 100 years so no instant arithmetic overflows.
fn later(at: Instant, d: Duration) -> Instant {
    const CAP: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(d.min(CAP)).unwrap_or(at)
}
