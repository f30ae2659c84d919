//! The Redis store's counts, their catalog, and their publication.

use buttress_core::telemetry::{Count, Emit, MetricInfo, MetricKind, Unit};

/// The layer kind a Redis store registers its name as.
pub(crate) const KIND: &str = "cache_redis";

const HITS: &str = "buttress_cache_redis_hits_total";
const MISSES: &str = "buttress_cache_redis_misses_total";
const DECODE_FAILURES: &str = "buttress_cache_redis_decode_failures_total";
const ENCODE_FAILURES: &str = "buttress_cache_redis_encode_failures_total";
const ERRORS: &str = "buttress_cache_redis_errors_total";
const TIMEOUTS: &str = "buttress_cache_redis_timeouts_total";
const REJECTED: &str = "buttress_cache_redis_rejected_total";
const WRITES: &str = "buttress_cache_redis_writes_total";
const WRITES_DROPPED: &str = "buttress_cache_redis_writes_dropped_total";
const OVERSIZED: &str = "buttress_cache_redis_oversized_total";
const PUBLISHED: &str = "buttress_cache_redis_invalidations_published_total";
const RECEIVED: &str = "buttress_cache_redis_invalidations_received_total";
const RECONNECTS: &str = "buttress_cache_redis_invalidation_reconnects_total";
const RECOVERIES: &str = "buttress_cache_redis_recoveries_total";
const L1_FLUSHES: &str = "buttress_cache_redis_l1_flushes_total";
const LEASE_WAITS: &str = "buttress_cache_redis_lease_waits_total";
const LEASE_FILLS: &str = "buttress_cache_redis_lease_fills_total";
pub(crate) const ROUND_TRIP_SECONDS: &str = "buttress_cache_redis_round_trip_seconds";

const fn counter(name: &'static str, help: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help,
    }
}

/// Every metric a [`RedisStore`](crate::store::RedisStore) emits, each
/// labelled `name` with the store's [name](crate::store::RedisStoreBuilder::name).
/// (Its circuit breaker publishes the `buttress_breaker_*` series under
/// the same name.)
pub static REDIS_METRICS: &[MetricInfo] = &[
    counter(
        HITS,
        "Keys Redis returned with a value that decoded (served to the cache, which judges freshness).",
    ),
    counter(MISSES, "Keys Redis did not hold."),
    counter(
        DECODE_FAILURES,
        "Keys whose stored value was not an intact envelope of this store's value type (foreign, altered, another format): answered as misses.",
    ),
    counter(
        ENCODE_FAILURES,
        "Keys or values the codec could not encode: the command was not sent.",
    ),
    counter(
        ERRORS,
        "Commands Redis answered with an error, or that failed on the connection.",
    ),
    counter(
        TIMEOUTS,
        "Commands not answered within the store's timeout (dropped: a read is a miss, a write is lost).",
    ),
    counter(
        REJECTED,
        "Reads and writes not sent because the store's circuit breaker was open.",
    ),
    counter(
        RECOVERIES,
        "Times Redis answered again after commands had failed on the connection or timed out: the data connection recovered (reconnected, or the server came back).",
    ),
    counter(WRITES, "Entries Redis acknowledged writing."),
    counter(
        WRITES_DROPPED,
        "Entries not written because of an error, a timeout or an open breaker.",
    ),
    counter(
        OVERSIZED,
        "Entries not written because their envelope was larger than max_value_bytes.",
    ),
    counter(
        PUBLISHED,
        "Invalidation messages sent with writes and deletes (one per key, or one for a predicate deletion).",
    ),
    counter(
        RECEIVED,
        "Invalidation messages from other instances applied to a subscribed Tiered store's L1.",
    ),
    counter(
        RECONNECTS,
        "Times the invalidation subscription was made again after its connection dropped (each one flushes L1).",
    ),
    counter(
        L1_FLUSHES,
        "Times a subscribed Tiered store's L1 was emptied: on every (re)subscription, and on another instance's predicate deletion.",
    ),
    counter(
        LEASE_WAITS,
        "Misses that waited because another instance held the key's stampede lease.",
    ),
    counter(
        LEASE_FILLS,
        "Lease waits answered by the entry the lease holder wrote (no backend call).",
    ),
    MetricInfo {
        name: ROUND_TRIP_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &[],
        help: "Time from sending a command to its answer, for every command answered within the timeout.",
    },
];

/// What a store counts, in its own memory.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: Count,
    pub(crate) misses: Count,
    pub(crate) decode_failures: Count,
    pub(crate) encode_failures: Count,
    pub(crate) errors: Count,
    pub(crate) timeouts: Count,
    pub(crate) rejected: Count,
    pub(crate) recoveries: Count,
    pub(crate) writes: Count,
    pub(crate) writes_dropped: Count,
    pub(crate) oversized: Count,
    pub(crate) published: Count,
    pub(crate) received: Count,
    pub(crate) reconnects: Count,
    pub(crate) l1_flushes: Count,
    pub(crate) lease_waits: Count,
    pub(crate) lease_fills: Count,
}

/// The counts of a [`RedisStore`](crate::store::RedisStore), from
/// [`RedisStore::snapshot`](crate::store::RedisStore::snapshot): the same
/// totals its metrics publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStoreSnapshot {
    /// Keys found and decoded.
    pub hits: u64,
    /// Keys Redis did not hold.
    pub misses: u64,
    /// Keys whose value did not decode (answered as misses).
    pub decode_failures: u64,
    /// Keys or values the codec could not encode.
    pub encode_failures: u64,
    /// Commands that failed with an error.
    pub errors: u64,
    /// Commands that timed out.
    pub timeouts: u64,
    /// Commands not sent because the breaker was open.
    pub rejected: u64,
    /// Times Redis answered again after commands had failed or timed out.
    pub recoveries: u64,
    /// Entries written.
    pub writes: u64,
    /// Entries not written because of an error, a timeout or the breaker.
    pub writes_dropped: u64,
    /// Entries not written because they were too large.
    pub oversized: u64,
    /// Invalidation messages sent.
    pub invalidations_published: u64,
    /// Invalidation messages from other instances applied to L1.
    pub invalidations_received: u64,
    /// Times the invalidation subscription was made again after a drop.
    pub invalidation_reconnects: u64,
    /// Times a subscribed L1 was emptied.
    pub l1_flushes: u64,
    /// Misses that waited on another instance's stampede lease.
    pub lease_waits: u64,
    /// Lease waits answered by the holder's entry.
    pub lease_fills: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RedisStoreSnapshot {
        RedisStoreSnapshot {
            hits: self.hits.get(),
            misses: self.misses.get(),
            decode_failures: self.decode_failures.get(),
            encode_failures: self.encode_failures.get(),
            errors: self.errors.get(),
            timeouts: self.timeouts.get(),
            rejected: self.rejected.get(),
            recoveries: self.recoveries.get(),
            writes: self.writes.get(),
            writes_dropped: self.writes_dropped.get(),
            oversized: self.oversized.get(),
            invalidations_published: self.published.get(),
            invalidations_received: self.received.get(),
            invalidation_reconnects: self.reconnects.get(),
            l1_flushes: self.l1_flushes.get(),
            lease_waits: self.lease_waits.get(),
            lease_fills: self.lease_fills.get(),
        }
    }

    pub(crate) fn publish(&self, out: &mut Emit<'_>) {
        let s = self.snapshot();
        out.counter(HITS, s.hits);
        out.counter(MISSES, s.misses);
        out.counter(DECODE_FAILURES, s.decode_failures);
        out.counter(ENCODE_FAILURES, s.encode_failures);
        out.counter(ERRORS, s.errors);
        out.counter(TIMEOUTS, s.timeouts);
        out.counter(REJECTED, s.rejected);
        out.counter(RECOVERIES, s.recoveries);
        out.counter(WRITES, s.writes);
        out.counter(WRITES_DROPPED, s.writes_dropped);
        out.counter(OVERSIZED, s.oversized);
        out.counter(PUBLISHED, s.invalidations_published);
        out.counter(RECEIVED, s.invalidations_received);
        out.counter(RECONNECTS, s.invalidation_reconnects);
        out.counter(L1_FLUSHES, s.l1_flushes);
        out.counter(LEASE_WAITS, s.lease_waits);
        out.counter(LEASE_FILLS, s.lease_fills);
    }
}
