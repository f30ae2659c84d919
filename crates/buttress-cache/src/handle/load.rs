//! The load path: judging a found entry, reading through on a miss,
//! writing results, background refreshes.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::Classify;
use buttress_core::time::{Instant, saturating_nanos};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;
use tracing::Instrument;

use super::Shared;
use super::flight::{Lead, Outcome};
use crate::counters::bump;
use crate::entry::{Entry, Ticks};
use crate::error::CoalescedError;
use crate::policy::{CachePolicy, ErrorPolicy, Loaded, Rules};
use crate::store::Store;

/// `fut`'s output, or `None` if `deadline` passes first (never without
/// one). The timer is made only once `fut` has to wait: an in-process
/// store answers at once and costs no timer.
fn bounded<F: Future>(deadline: Option<Instant>, fut: F) -> Bounded<F> {
    Bounded {
        fut,
        deadline,
        sleep: None,
    }
}

pin_project! {
    /// The future of [`bounded`].
    struct Bounded<F> {
        #[pin]
        fut: F,
        deadline: Option<Instant>,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let Some(at) = *this.deadline else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(at)));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

/// Counts one load in
/// [`CacheSnapshot::loads_in_flight`](crate::CacheSnapshot::loads_in_flight)
/// for as long as it lives, however the load ends (finished, timed out,
/// aborted, dropped).
struct Running<'a>(&'a AtomicU64);

impl<'a> Running<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`Shared::judge`] made of a found entry.
pub(crate) enum Found<V, Req> {
    /// Answered from the entry: fresh, or stale while a refresh runs.
    Served(V),
    /// A load is needed: the request back, and the entry if it may still
    /// answer a failed load (stale-if-error).
    Load(Req, Option<Entry<V>>),
}

impl<K, V, St> Shared<K, V, St>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// Leads one load: calls the backend, writes, hands the result to the
    /// waiters, all by `deadline`. On failure (a timeout included),
    /// answers with `stale` if it is still servable (stale-if-error).
    /// Its callers run it in a [`load_span`](Self::load_span).
    #[allow(clippy::too_many_arguments)]
    async fn lead<S, Req, P, N, C>(
        self: &Arc<Self>,
        lead: Lead<K, V, St>,
        key: K,
        req: Req,
        mut svc: S,
        rules: &Rules<P, N, C>,
        stale: Option<Entry<V>>,
        expect_version: Option<u64>,
        deadline: Option<Instant>,
    ) -> Result<V, BoxError>
    where
        S: Service<Req, Response = V>,
        S::Error: Into<BoxError>,
        P: CachePolicy<V>,
        N: ErrorPolicy<S::Error>,
        C: Classify<V, S::Error>,
    {
        let _running = Running::new(&self.counters.loads_running);
        let epoch0 = self.epoch(&key);
        let start = Instant::now();
        let call = async {
            // Converted at once: `S::Error` need not be `Send`.
            let ready: Result<(), BoxError> = std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Into::into);
            match ready {
                Ok(()) => rules.sort(svc.call(req).await),
                Err(e) => Loaded::not_ready(e),
            }
        };
        // Past the deadline the call is dropped, which cancels it.
        let result = bounded(deadline, call).await;
        let load_time = start.elapsed();
        bump(&self.counters.loads);
        self.counters
            .load_nanos
            .fetch_add(saturating_nanos(load_time), Ordering::Relaxed);
        self.cfg.load_seconds.record(load_time.as_secs_f64());
        let Some(loaded) = result else {
            bump(&self.counters.load_failures);
            return self.give_up(lead, stale.as_ref());
        };
        match loaded {
            Loaded::Value(value) => {
                let verdict = rules.policy.verdict(&value);
                let write = self.write(
                    key,
                    value.clone(),
                    verdict,
                    start,
                    load_time,
                    epoch0,
                    expect_version,
                );
                // A store that does not answer in time leaves the value
                // unwritten (or written, unconfirmed); it is still the
                // answer.
                if bounded(deadline, write).await.is_none() {
                    bump(&self.counters.timeouts);
                    tracing::debug!(name = %self.cfg.name, "cache write timed out");
                }
                lead.finish(|| Outcome::Value(value.clone()));
                Ok(value)
            }
            Loaded::Passed { value, failed } => {
                if failed {
                    bump(&self.counters.load_failures);
                    tracing::debug!(name = %self.cfg.name, "cache load failed: a response classified as a failure");
                    if let Some(value) = self.stale_on_error(stale.as_ref()) {
                        lead.finish(|| Outcome::Value(value.clone()));
                        return Ok(value);
                    }
                }
                lead.finish(|| Outcome::Value(value.clone()));
                Ok(value)
            }
            Loaded::Error {
                error,
                failed,
                cache,
            } => {
                if failed {
                    bump(&self.counters.load_failures);
                    tracing::debug!(name = %self.cfg.name, error = %error, "cache load failed");
                    if let Some(value) = self.stale_on_error(stale.as_ref()) {
                        lead.finish(|| Outcome::Value(value.clone()));
                        return Ok(value);
                    }
                }
                if let Some(verdict) = cache {
                    let write = self.write_error(key, &verdict, start, epoch0, expect_version);
                    if bounded(deadline, write).await.is_none() {
                        bump(&self.counters.timeouts);
                        tracing::debug!(name = %self.cfg.name, "cache error write timed out");
                    }
                    // Waiters get a copy each; the caller keeps the
                    // original.
                    lead.finish(|| Outcome::Error(verdict.make));
                    return Err(error);
                }
                Err(lead.fail(error))
            }
        }
    }

    /// The span a load runs in: `buttress.cache.load`, with the cache's
    /// `name` and whether the load is a background `refresh`.
    fn load_span(&self, refresh: bool) -> tracing::Span {
        tracing::debug_span!("buttress.cache.load", name = %self.cfg.name, refresh)
    }

    /// Ends a load that ran out of time: its waiters and its caller get
    /// [`LoadTimedOut`](crate::LoadTimedOut), or `stale` if it is still
    /// servable (stale-if-error), and the key is free for the next load.
    fn give_up(&self, lead: Lead<K, V, St>, stale: Option<&Entry<V>>) -> Result<V, BoxError> {
        let error = self.timed_out();
        tracing::debug!(name = %self.cfg.name, error = %error, "cache load timed out");
        if let Some(value) = self.stale_on_error(stale) {
            lead.finish(|| Outcome::Value(value.clone()));
            return Ok(value);
        }
        lead.finish(|| Outcome::TimedOut(error.clone()));
        Err(Box::new(error))
    }

    fn stale_on_error(&self, stale: Option<&Entry<V>>) -> Option<V> {
        let entry = stale?;
        if entry.is_negative() || !entry.is_servable(Instant::now()) {
            return None;
        }
        bump(&self.counters.stale_if_error);
        Some(entry.value().clone())
    }

    /// The miss path: look the key up if the caller could not (then
    /// answer a hit, or a stale read with a background refresh, as the
    /// caller's synchronous path does), then join or lead a load. Leaders'
    /// and waiters' futures are interchangeable: if the leader's is
    /// dropped, a waiter leads with its own request.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn read_through<S, Req, P, N, C>(
        self: Arc<Self>,
        key: K,
        mut req: Req,
        svc: S,
        rules: Rules<P, N, C>,
        mut stale: Option<Entry<V>>,
        looked_up: bool,
    ) -> Result<V, BoxError>
    where
        S: Service<Req, Response = V> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        Req: Send + 'static,
        P: CachePolicy<V> + Clone + Send + Sync + 'static,
        N: ErrorPolicy<S::Error> + Clone + Send + Sync + 'static,
        C: Classify<V, S::Error> + Clone + Send + Sync + 'static,
    {
        if !looked_up && let Some(entry) = self.store.get(&key).await {
            match self.judge(entry, Instant::now(), &key, req, &svc, &rules) {
                Found::Served(value) => return Ok(value),
                Found::Load(given_back, servable) => {
                    req = given_back;
                    stale = servable;
                }
            }
        }
        if let Some(error) = self.cached_error(&key) {
            return Err(error);
        }
        bump(&self.counters.misses);
        // No call waits longer than `load_timeout` for a load, whether it
        // leads one or joins another's.
        let deadline = self.deadline();
        let mut waited = false;
        loop {
            match self.join(&key) {
                Ok(lead) => {
                    // Another load may have landed between our lookup and
                    // the join.
                    let Some(found) = bounded(deadline, self.store.get(&key)).await else {
                        return self.give_up(lead, stale.as_ref());
                    };
                    if let Some(entry) = found
                        && entry.is_fresh(Instant::now())
                    {
                        let value = entry.value().clone();
                        lead.finish(|| Outcome::Value(value.clone()));
                        return Ok(value);
                    }
                    if let Some(make) = self.errors.get(&key) {
                        let error = make();
                        lead.finish(|| Outcome::Error(make));
                        return Err(error);
                    }
                    return self
                        .lead(lead, key, req, svc, &rules, stale, None, deadline)
                        .instrument(self.load_span(false))
                        .await;
                }
                Err(flight) => {
                    if !waited {
                        waited = true;
                        bump(&self.counters.coalesced);
                    }
                    let Some(outcome) = bounded(deadline, flight.wait()).await else {
                        let error = self.timed_out();
                        if let Some(value) = self.stale_on_error(stale.as_ref()) {
                            return Ok(value);
                        }
                        return Err(Box::new(error));
                    };
                    match outcome {
                        Outcome::Value(value) => return Ok(value),
                        Outcome::Error(make) => {
                            if let Some(value) = self.stale_on_error(stale.as_ref()) {
                                return Ok(value);
                            }
                            return Err(make());
                        }
                        Outcome::Failed(error) => {
                            if let Some(value) = self.stale_on_error(stale.as_ref()) {
                                return Ok(value);
                            }
                            return Err(Box::new(CoalescedError::new(error)));
                        }
                        Outcome::TimedOut(error) => {
                            if let Some(value) = self.stale_on_error(stale.as_ref()) {
                                return Ok(value);
                            }
                            return Err(Box::new(error));
                        }
                        Outcome::Abandoned => continue,
                    }
                }
            }
        }
    }

    /// Answers a request at `at` from the entry found for `key`, as every
    /// lookup does (the synchronous one in `CacheService::call` and the
    /// asynchronous one in [`read_through`](Self::read_through)): a fresh
    /// entry is a hit (starting an XFetch refresh when one is drawn); a
    /// stale one inside its revalidate window is served while one
    /// background refresh runs; otherwise the request is given back for a
    /// load, with the entry if it may still answer a failed one.
    pub(crate) fn judge<S, Req, P, N, C>(
        self: &Arc<Self>,
        entry: Entry<V>,
        at: Instant,
        key: &K,
        req: Req,
        svc: &S,
        rules: &Rules<P, N, C>,
    ) -> Found<V, Req>
    where
        S: Service<Req, Response = V> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        Req: Send + 'static,
        P: CachePolicy<V> + Clone + Send + Sync + 'static,
        N: ErrorPolicy<S::Error> + Clone + Send + Sync + 'static,
        C: Classify<V, S::Error> + Clone + Send + Sync + 'static,
    {
        if entry.settled_at(at) {
            self.count_hit();
            return Found::Served(entry.into_value());
        }
        let now = Ticks::from_instant(at);
        if entry.fresh_at(now) {
            self.count_hit();
            if self.xfetch_due(&entry, at) {
                // Without a runtime the early refresh is simply not made.
                let _ = self.refresh(key, req, svc, rules, &entry);
            }
            return Found::Served(entry.into_value());
        }
        let mut req = req;
        if entry.revalidating_at(now) {
            match self.refresh(key, req, svc, rules, &entry) {
                Ok(()) => {
                    self.count_stale();
                    return Found::Served(entry.into_value());
                }
                // No runtime to refresh on: load now instead.
                Err(given_back) => req = given_back,
            }
        }
        Found::Load(req, entry.servable_at(now).then_some(entry))
    }

    /// Starts one background refresh of `key` (stale-while-revalidate,
    /// XFetch) unless a load of it is already running. Gives the request
    /// back when there is no tokio runtime to spawn on. The refresh is
    /// bounded by `load_timeout` like any load, and an invalidation of
    /// `key` aborts it.
    pub(crate) fn refresh<S, Req, P, N, C>(
        self: &Arc<Self>,
        key: &K,
        req: Req,
        svc: &S,
        rules: &Rules<P, N, C>,
        entry: &Entry<V>,
    ) -> Result<(), Req>
    where
        S: Service<Req, Response = V> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        Req: Send + 'static,
        P: CachePolicy<V> + Clone + Send + Sync + 'static,
        N: ErrorPolicy<S::Error> + Clone + Send + Sync + 'static,
        C: Classify<V, S::Error> + Clone + Send + Sync + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(req);
        };
        let Ok(lead) = self.join(key) else {
            return Ok(()); // a load is already running
        };
        bump(&self.counters.refreshes);
        let shared = Arc::clone(self);
        let stale = entry.clone();
        let expected = entry.version();
        let deadline = Instant::now().checked_add(self.cfg.load_timeout);
        let flight = lead.flight();
        let (key, svc, rules) = (key.clone(), svc.clone(), rules.clone());
        let span = self.load_span(true);
        let task = runtime.spawn(
            async move {
                let _ = shared
                    .lead(
                        lead,
                        key,
                        req,
                        svc,
                        &rules,
                        Some(stale),
                        Some(expected),
                        deadline,
                    )
                    .await;
            }
            .instrument(span),
        );
        // Gone if the refresh has already finished.
        if let Some(flight) = flight.upgrade() {
            flight.run_by(task.abort_handle());
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "quick_cache"))]
mod tests {
    use super::*;
    use std::time::Duration;

    use buttress_core::classify::ErrorsAsFailures;

    use crate::policy::{CacheNoErrors, CacheSuccesses, Rules};
    use crate::store::QuickCacheStore;
    use crate::{Cache, LoadTimedOut};

    /// A waiter's wait is bounded by its own deadline, not only by the
    /// load it joined: a load led by someone whose bound is later (a
    /// waiter that took over) or absent must not hold it longer.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_bounds_its_own_wait_whatever_load_it_joined() {
        let bound = Duration::from_secs(5);
        let cache =
            Cache::<u64, u64, _>::builder(QuickCacheStore::builder(1 << 20).build().unwrap())
                .load_timeout(bound)
                .build()
                .unwrap();
        let shared = Arc::clone(&cache.shared);
        // A load of key 1 that nothing bounds: this test holds its lead.
        let Ok(_unbounded) = shared.join(&1) else {
            panic!("nobody else loads key 1");
        };
        let backend = tower::service_fn(|k: u64| async move { Ok::<_, std::io::Error>(k) });
        let started = Instant::now();
        let waiter = Arc::clone(&shared).read_through(
            1,
            1,
            backend,
            Rules {
                policy: CacheSuccesses,
                errors: CacheNoErrors,
                classifier: ErrorsAsFailures::new(),
            },
            None,
            false,
        );
        let result = tokio::time::timeout(Duration::from_secs(3600), waiter)
            .await
            .expect("the waiter is bounded");
        let error = result.unwrap_err();
        assert!(error.downcast_ref::<LoadTimedOut>().is_some(), "{error}");
        assert_eq!(started.elapsed(), bound);
        assert_eq!(cache.snapshot().timeouts, 1);
    }
}
