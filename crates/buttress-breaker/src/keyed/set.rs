//! The set behind a keyed breaker: its map of breakers (capped, idle keys
//! swept), what it counts besides its breakers' own counts, and its
//! publication.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use buttress_core::stripe::stripes;
use buttress_core::sync::lock;
use buttress_core::telemetry::{Emit, Name, Publish, Registration, register_catalog};
use buttress_core::time::Origin;

use super::KeyedCircuitBreakerSnapshot;
use super::config::KeyedConfig;
use crate::config::Config;
use crate::handle::{CircuitBreaker, WeakBreaker};
use crate::telemetry::{self, HighWater, Totals, counts_as_open};

type Breakers<K> = quick_cache::sync::Cache<
    K,
    CircuitBreaker,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    Evictions,
>;

/// A keyed set's shared state.
pub(super) struct Set<K> {
    /// The template's validated configuration, cloned for each key.
    config: Config,
    /// The set's effective name, which its breakers carry.
    pub(super) name: Name,
    max_keys: usize,
    per_key_metrics: bool,
    idle: Option<Idle>,
    counts: Arc<SetCounts>,
    breakers: Breakers<K>,
    /// Holds the set's name while the set lives.
    _registration: Registration,
}

/// Idle eviction's clock and schedule, in nanoseconds from `origin`.
struct Idle {
    origin: Origin,
    timeout: u64,
    /// How stale a key's last-use stamp may be: stamps are refreshed at
    /// most this often (see [`CircuitBreaker::touch`]).
    granularity: u64,
    /// How often, at most, a sweep visits every key.
    interval: u64,
    next_sweep: AtomicU64,
}

/// What the set counts besides its breakers' own counts.
#[derive(Default)]
struct SetCounts {
    /// The totals of evicted breakers, taken when they left.
    evicted: Mutex<Totals>,
    /// Every breaker created and not yet seen evicted or dropped.
    members: Mutex<Vec<WeakBreaker>>,
    high: HighWater,
    /// The keys with series of their own (at most `max_keys`, ever), and
    /// each one's breaker now.
    granted: Mutex<HashMap<Arc<str>, WeakBreaker>>,
    /// Whether the warning that `granted` is full has been given.
    warned: AtomicBool,
    idle_evictions: AtomicU64,
    cap_evictions: AtomicU64,
}

impl SetCounts {
    /// Takes `breaker` out of the set's live breakers: its totals move into
    /// the set's, and `cause` counts one more eviction.
    fn evict(&self, breaker: &CircuitBreaker, cause: &AtomicU64) {
        let inner = breaker.inner();
        // Retired first: a publication that sees these totals in `evicted`
        // then sees the flag, and does not count the breaker twice.
        inner.retire();
        lock(&self.evicted).add(&inner.totals());
        cause.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives `breaker` series of its own if its key has them or there is
    /// room for one more key.
    fn grant(&self, name: Name, max_keys: usize, breaker: &CircuitBreaker) {
        let Some(key) = breaker.inner().key_text() else {
            return;
        };
        let mut granted = lock(&self.granted);
        if let Some(weak) = granted.get_mut(key) {
            *weak = breaker.downgrade();
        } else if granted.len() < max_keys {
            granted.insert(Arc::clone(key), breaker.downgrade());
        } else if !self.warned.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                name = %name,
                max_keys,
                "keyed circuit breaker: per-key metric series reached max_keys keys; \
                 new keys report only in the set's totals"
            );
        }
    }

    /// The breakers live in the set now (pruning the others from the list).
    fn live_members(&self) -> Vec<CircuitBreaker> {
        let mut members = lock(&self.members);
        members.retain(|w| live(w).is_some());
        members.iter().filter_map(live).collect()
    }
}

/// Moves the counts of breakers evicted at the cap into the set's.
#[derive(Clone)]
struct Evictions(Arc<SetCounts>);

impl<K> quick_cache::Lifecycle<K, CircuitBreaker> for Evictions {
    type RequestState = ();

    fn on_evict(&self, (): &mut (), _key: K, breaker: CircuitBreaker) {
        self.0.evict(&breaker, &self.0.cap_evictions);
    }
}

/// A breaker that is live in its set (not evicted), if `weak` is one.
fn live(weak: &WeakBreaker) -> Option<CircuitBreaker> {
    weak.upgrade().filter(|b| !b.inner().is_retired())
}

/// The map's shard count and capacity. Each shard holds an equal share of
/// the capacity, so the capacity is `max_keys` rounded down to a multiple
/// of the shard count, and shards halve until each holds at least 32 keys:
/// the set never holds more than `max_keys`, and at most 1/32 fewer.
fn layout(max_keys: usize) -> (usize, usize) {
    let mut shards = (stripes() * 2).next_power_of_two();
    while shards > 1 && max_keys / shards < 32 {
        shards /= 2;
    }
    (shards, max_keys / shards * shards)
}

impl<K> Set<K>
where
    K: Eq + Hash + Clone + fmt::Display + Send + Sync + 'static,
{
    /// A set claiming the template's name as a breaker would, and
    /// publishing under it.
    pub(super) fn new(config: KeyedConfig) -> Arc<Self> {
        register_catalog(telemetry::METRICS);
        let registration = Registration::new(telemetry::KIND, config.breaker.name);
        let counts = Arc::new(SetCounts::default());
        let (shards, capacity) = layout(config.max_keys);
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(capacity)
            .weight_capacity(capacity as u64)
            .build()
            .expect("every option is set");
        let breakers = quick_cache::sync::Cache::with_options(
            options,
            quick_cache::UnitWeighter,
            quick_cache::DefaultHashBuilder::default(),
            Evictions(Arc::clone(&counts)),
        );
        let idle = config.idle_timeout.map(|timeout| {
            let interval = (timeout / 8).max(1);
            Idle {
                origin: Origin::now(),
                timeout,
                granularity: (timeout / 64).max(1),
                interval,
                next_sweep: AtomicU64::new(interval),
            }
        });
        let set = Arc::new(Self {
            name: registration.name(),
            config: config.breaker,
            max_keys: config.max_keys,
            per_key_metrics: config.per_key_metrics,
            idle,
            counts,
            breakers,
            _registration: registration,
        });
        let weak: Weak<Self> = Arc::downgrade(&set);
        set._registration.attach(weak);
        set
    }

    /// The breaker for `key`, created (closed) if the key is new, and
    /// stamped as used now; sweeps idle keys when a sweep is due.
    pub(super) fn get(&self, key: &K) -> CircuitBreaker {
        let created = self.breakers.get_or_insert_with(key, || {
            let breaker =
                CircuitBreaker::for_key(self.config.clone(), self.name, Arc::from(key.to_string()));
            self.add_member(&breaker);
            Ok::<_, Infallible>(breaker)
        });
        let breaker = match created {
            Ok(breaker) => breaker,
            Err(never) => match never {},
        };
        if let Some(idle) = &self.idle {
            let now = idle.origin.elapsed_nanos();
            breaker.touch(now, idle.granularity);
            if now >= idle.next_sweep.load(Ordering::Relaxed) {
                self.sweep(idle, now);
            }
        }
        breaker
    }

    /// Evicts every breaker idle for longer than the timeout, if no other
    /// thread is sweeping for this interval.
    ///
    /// A stamp is at most `granularity` older than its key's last use, so
    /// a key is evicted once its stamp is `timeout + granularity` old: idle
    /// for longer than `timeout`, never less. A call that took a breaker
    /// just before the sweep stamped it may still find it evicted; it uses
    /// it once more, as a call in flight at an eviction at the cap does,
    /// and that call is not in the set's totals.
    #[cold]
    fn sweep(&self, idle: &Idle, now: u64) {
        let due = idle.next_sweep.load(Ordering::Relaxed);
        if now < due
            || idle
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(idle.interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let cutoff = idle.timeout.saturating_add(idle.granularity);
        self.breakers.retain(|_, breaker| {
            if now.saturating_sub(breaker.last_used()) < cutoff {
                return true;
            }
            self.counts.evict(breaker, &self.counts.idle_evictions);
            false
        });
    }

    /// The breaker for `key`, if it exists; creates nothing and does not
    /// count as a use.
    pub(super) fn peek(&self, key: &K) -> Option<CircuitBreaker> {
        self.breakers.peek(key)
    }

    pub(super) fn snapshot(&self) -> KeyedCircuitBreakerSnapshot {
        let open_keys = self
            .counts
            .live_members()
            .iter()
            .filter(|b| counts_as_open(b.state()))
            .count();
        KeyedCircuitBreakerSnapshot {
            keys: self.breakers.len(),
            open_keys,
            idle_evictions: self.counts.idle_evictions.load(Ordering::Relaxed),
            cap_evictions: self.counts.cap_evictions.load(Ordering::Relaxed),
        }
    }
}

impl<K: Eq + Hash> Set<K> {
    /// How many keys have a breaker now.
    pub(super) fn len(&self) -> usize {
        self.breakers.len()
    }
}

impl<K> Set<K> {
    /// Counts a new breaker in the set (and gives it series of its own if
    /// asked to).
    fn add_member(&self, breaker: &CircuitBreaker) {
        {
            let mut members = lock(&self.counts.members);
            // Breakers leave the list when a publication or a snapshot
            // finds them gone; without either, prune here so that the list
            // stays bounded.
            if members.len() >= self.max_keys.saturating_mul(2) {
                members.retain(|w| live(w).is_some());
            }
            members.push(breaker.downgrade());
        }
        if self.per_key_metrics {
            self.counts.grant(self.name, self.max_keys, breaker);
        }
    }
}

impl<K: Eq + Hash + Send + Sync + 'static> Publish for Set<K> {
    fn publish(&self, out: &mut Emit<'_>) {
        let counts = &*self.counts;
        // `evicted` before the members: see `SetCounts::evict`.
        let mut totals = *lock(&counts.evicted);
        let mut open = 0;
        for breaker in &counts.live_members() {
            totals.add(&breaker.inner().totals());
            open += usize::from(counts_as_open(breaker.state()));
        }
        let totals = counts.high.raise(totals);
        telemetry::publish_set(out, &totals, self.breakers.len(), open);
        let keys: Vec<_> = lock(&counts.granted)
            .iter()
            .map(|(key, weak)| (Arc::clone(key), live(weak)))
            .collect();
        for (key, breaker) in keys {
            telemetry::publish_key(out, &key, breaker.map(|b| b.inner().current()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_never_exceeds_max_keys_and_loses_at_most_a_32nd() {
        for max_keys in [1, 5, 31, 32, 33, 100, 1_000, 1_001, 12_345, 1 << 20] {
            let (shards, capacity) = layout(max_keys);
            assert!(shards.is_power_of_two());
            assert!(capacity <= max_keys, "{max_keys}");
            assert!(capacity >= max_keys - max_keys / 32, "{max_keys}");
            assert_eq!(capacity % shards, 0);
        }
        let (shards, capacity) = layout(usize::MAX);
        assert_eq!(capacity, usize::MAX / shards * shards, "no overflow");
    }
}
