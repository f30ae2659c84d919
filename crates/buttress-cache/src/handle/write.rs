//! The write side of the load path: storing a loaded value or a chosen
//! error, unless an invalidation or (for a refresh) a newer entry came
//! since the load began, and sweeping the tag index afterwards.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::time::Instant;

use super::Shared;
use crate::counters::bump;
use crate::entry::{Entry, later};
use crate::policy::{ErrorVerdict, Kind, Verdict};
use crate::store::Store;
use crate::tags::SweepClaim;

impl<K, V, St> Shared<K, V, St>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// Writes a loaded value (fresh for its TTL from `started`), unless the policy, the weight bound, an
    /// invalidation since `epoch0`, or (for a refresh) a change of the
    /// entry since it was read says not to.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write(
        self: &Arc<Self>,
        key: K,
        value: V,
        verdict: Verdict,
        started: Instant,
        load_time: Duration,
        epoch0: u64,
        expect_version: Option<u64>,
    ) {
        if verdict.kind == Kind::Skip {
            return;
        }
        let weight = (self.cfg.weigher)(&key, &value);
        // At most `max_entry_bytes`, a `u32`, from here on.
        let Some(weight) = u32::try_from(weight)
            .ok()
            .filter(|w| *w <= self.cfg.max_entry_bytes)
        else {
            bump(&self.counters.oversized);
            return;
        };
        let negative = verdict.kind == Kind::Negative;
        let base = verdict.ttl.unwrap_or(if negative {
            self.cfg.negative_ttl
        } else {
            self.cfg.ttl
        });
        // The TTL counts from when the backend was asked: the value is at
        // most that fresh (as RFC 9111 counts age from the request).
        let fresh_until = later(started, self.jittered(base));
        let (revalidate_until, stale_until) = if negative {
            (fresh_until, fresh_until)
        } else {
            let swr = self.cfg.stale_while_revalidate;
            (
                later(fresh_until, swr),
                later(fresh_until, swr.max(self.cfg.stale_if_error)),
            )
        };
        let early_from = self.early_from(started, fresh_until, load_time);
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let gate = self.gate.read().await;
        if !self.may_write(&key, epoch0, expect_version).await {
            return;
        }
        self.errors.remove(&key);
        let entry = Entry::new(
            value,
            fresh_until,
            revalidate_until,
            stale_until,
            early_from,
            load_time,
            weight,
            version,
            negative,
        );
        // The tag pairs go in once the entry is in the store (or, if this
        // future is dropped during the `put`, when it is dropped), still
        // under the gate: a sweep then only sees pairs of written entries
        // (see `tags.rs`), and an invalidation sees the pairs of every
        // write it does not stop.
        let pending = self.tags.pending(&key, version, verdict.tags);
        match &pending {
            Some(p) => self.store.put_tagged(key, entry, p.tags()).await,
            None => self.store.put(key, entry).await,
        }
        let claim = pending.and_then(|p| p.commit());
        drop(gate);
        if let Some(claim) = claim {
            self.sweep_tags(claim).await;
        }
    }

    /// Sweeps the tag index on a task of its own, so that no request waits
    /// for it; inline when there is no tokio runtime to spawn on.
    async fn sweep_tags(self: &Arc<Self>, claim: SweepClaim) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let shared = Arc::clone(self);
                runtime.spawn(async move { shared.tags.sweep(&shared.store, claim).await });
            }
            Err(_) => self.tags.sweep(&self.store, claim).await,
        }
    }

    /// Whether a load of `key` that started at `epoch0` may write (the
    /// caller holds the gate shared): not if an invalidation came since,
    /// nor, for a refresh, if the entry changed since it was read.
    async fn may_write(&self, key: &K, epoch0: u64, expect_version: Option<u64>) -> bool {
        if self.epoch(key) != epoch0 {
            if expect_version.is_some() {
                bump(&self.counters.refreshes_dropped);
            }
            return false;
        }
        if let Some(expected) = expect_version {
            let current = self.store.get(key).await.map(|e| e.version());
            if current != Some(expected) {
                bump(&self.counters.refreshes_dropped);
                tracing::debug!(name = %self.cfg.name, "refresh dropped: the entry changed");
                return false;
            }
        }
        true
    }

    /// Caches an error the policy chose, for its jittered TTL from
    /// `started`, under the same rules as [`write`](Self::write). The
    /// key's entry, if any, is dropped: the error is now its answer.
    pub(super) async fn write_error(
        &self,
        key: K,
        verdict: &ErrorVerdict,
        started: Instant,
        epoch0: u64,
        expect_version: Option<u64>,
    ) {
        let until = later(started, self.jittered(verdict.ttl));
        let _gate = self.gate.read().await;
        if !self.may_write(&key, epoch0, expect_version).await {
            return;
        }
        if !self
            .errors
            .insert(key.clone(), Arc::clone(&verdict.make), until)
        {
            tracing::debug!(name = %self.cfg.name, "error not cached: the table is full");
            return;
        }
        self.store.delete(&key).await;
    }

    /// A request answered with the error cached for `key`, counted as a
    /// hit.
    pub(super) fn cached_error(&self, key: &K) -> Option<BoxError> {
        let make = self.errors.get(key)?;
        bump(&self.counters.errors_served);
        self.count_hit();
        Some(make())
    }
}
