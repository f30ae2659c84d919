//! How a request is copied for another attempt, and how its deadline
//! travels with it.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use buttress_core::key::KeyExtractor;
use buttress_core::time::Instant;

/// Copies requests for retries and hedges, and decides which may be sent
/// more than once.
///
/// tower's retry keeps a copy of each request for the next attempt; this
/// trait makes that copy (the [`RetryPolicy`](crate::RetryPolicy)'s
/// `clone_request` calls [`replay`](Self::replay)), so requests need not be
/// `Clone`, and a request that must not be repeated (a `POST` without an
/// `Idempotency-Key`) is simply not copied, and therefore sent once.
///
/// Implementations: [`CloneRequest`] for any `Clone` request (the
/// default), and [`HttpReplay`](crate::http::HttpReplay) for
/// `http::Request` (feature `http`).
pub trait Replay<Req> {
    /// A copy of `req` for a later attempt, or `None` if it must be sent only once.
    fn replay(&self, req: &Req) -> Option<Req>;

    /// Whether the copy kept by [`replay`](Self::replay) can still be sent,
    /// asked before each retry (a streamed body that outgrew its buffer
    /// cannot). Default: `true`.
    fn can_replay(&self, req: &Req) -> bool {
        let _ = req;
        true
    }

    /// The deadline the request already carries (from a caller upstream),
    /// if the request type can carry one. Default: `None`.
    fn deadline(&self, req: &Req) -> Option<Instant> {
        let _ = req;
        None
    }

    /// The key of the budget this request draws on, with
    /// [`RetryPolicyBuilder::budget_per_key`](crate::RetryPolicyBuilder::budget_per_key).
    /// Default: `None` (the policy's own budget).
    fn budget_key(&self, req: &Req) -> Option<u64> {
        let _ = req;
        None
    }

    /// Writes the request's deadline into it before an attempt, so the
    /// inner service can see the time left. Default: does nothing.
    fn stamp(&self, req: &mut Req, deadline: Deadline, now: Instant) {
        let _ = (req, deadline, now);
    }
}

/// Copies requests with `Clone`: every request may be retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneRequest;

impl<Req: Clone> Replay<Req> for CloneRequest {
    #[inline]
    fn replay(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// When a request must be finished: an instant on tokio's clock.
///
/// The retry layer puts it into HTTP requests as an extension (feature
/// `http`), so the inner service (or a client library under it) can bound
/// its own work by [`remaining`](Self::remaining); a deadline already in
/// the request (from a caller upstream) is kept if it is the earlier one.
///
/// ```
/// use std::time::Duration;
/// use buttress_retry::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let d = Deadline::after(Duration::from_millis(300));
/// tokio::time::advance(Duration::from_millis(100)).await;
/// assert_eq!(d.remaining(), Duration::from_millis(200));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `at`.
    #[must_use]
    pub const fn at(at: Instant) -> Self {
        Self(at)
    }

    /// A deadline `budget` from now.
    #[must_use]
    pub fn after(budget: Duration) -> Self {
        Self(later(Instant::now(), budget))
    }

    /// The instant.
    #[must_use]
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// Time left from now (zero once passed).
    #[must_use]
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Gives requests a budget key from a [`KeyExtractor`] (a host, a tenant),
/// for [`RetryPolicyBuilder::budget_per_key`](crate::RetryPolicyBuilder::budget_per_key); copies
/// requests with the wrapped [`Replay`].
///
/// ```
/// use buttress_retry::{CloneRequest, KeyedReplay, Replay};
///
/// let by_tenant = KeyedReplay::new(CloneRequest, |req: &(String, u32)| Some(req.0.clone()));
/// let a = ("acme".to_string(), 1);
/// let b = ("acme".to_string(), 2);
/// assert_eq!(by_tenant.budget_key(&a), by_tenant.budget_key(&b));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyedReplay<R, K> {
    replay: R,
    keys: K,
}

impl<R, K> KeyedReplay<R, K> {
    /// Copies with `replay`, keys with `keys`.
    pub const fn new(replay: R, keys: K) -> Self {
        Self { replay, keys }
    }
}

impl<Req, R, K> Replay<Req> for KeyedReplay<R, K>
where
    R: Replay<Req>,
    K: KeyExtractor<Req>,
    K::Key: Hash,
{
    #[inline]
    fn replay(&self, req: &Req) -> Option<Req> {
        self.replay.replay(req)
    }

    fn can_replay(&self, req: &Req) -> bool {
        self.replay.can_replay(req)
    }

    fn deadline(&self, req: &Req) -> Option<Instant> {
        self.replay.deadline(req)
    }

    fn budget_key(&self, req: &Req) -> Option<u64> {
        let key = self.keys.extract(req)?;
        // A fixed hasher: the same key gets the same budget in every clone.
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        Some(h.finish())
    }

    fn stamp(&self, req: &mut Req, deadline: Deadline, now: Instant) {
        self.replay.stamp(req, deadline, now);
    }
}

/// `t + d`, saturating at about 30 years from `t` (tokio's own "far
/// future") instead of panicking on overflow.
#[inline]
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(86_400 * 365 * 30))
}
