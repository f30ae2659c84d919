//! `RedisStore`: the shared L2 tier on Redis.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use buttress_breaker::CircuitBreaker;
use buttress_core::classify::Outcome;
use buttress_core::telemetry::{Emit, Histogram, Name, Publish, Registration};
use buttress_core::time::Instant;
use redis::{RedisError, RedisResult, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::Entry;

mod bus;
mod config;
mod conn;
mod envelope;
mod key;
mod lease;
mod ops;
mod scan;
mod tags;
mod telemetry;

pub use self::config::RedisStoreBuilder;
pub use self::envelope::Codec;
pub use self::telemetry::{REDIS_METRICS, RedisStoreSnapshot};

use self::config::Config;
use self::conn::{Batch, Conn, Target};
use self::envelope::Clocks;
use self::telemetry::{Counters, ROUND_TRIP_SECONDS};

/// A [`Store`](super::Store) on Redis: the tier several instances of a service share.
///
/// ```no_run
/// use std::time::Duration;
/// use buttress_cache::{Cache, CacheLayer, redis, store::RedisStore};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let store = RedisStore::builder(client, "prices").build()?;
/// let cache = Cache::builder(store).ttl(Duration::from_secs(30)).build()?;
/// let prices = ServiceBuilder::new()
///     .layer(CacheLayer::new(cache, |sku: &u32| Some(*sku)))
///     .service(service_fn(|sku: u32| async move {
///         Ok::<_, std::io::Error>(u64::from(sku) * 100)
///     }));
/// // A miss: the backend answers and the entry goes to Redis, where every
/// // instance with the same namespace finds it.
/// assert_eq!(prices.oneshot(7).await?, 700);
/// # Ok(())
/// # }
/// ```
///
/// # One round trip per read
///
/// An entry is one Redis string, `<namespace>:v<schema version>:<key as
/// JSON>` (see [`key_of`](Self::key_of)), holding a small envelope: the
/// value (in the store's [`Codec`]) and the entry's timestamps as wall
/// times, Unix-epoch milliseconds. A read is one `GET`; the reader maps
/// the wall times onto its own clock, so the layer judges an entry from
/// Redis as it judges one from memory. A write is one `SET … PX`, the
/// expiry at the entry's last servable instant;
/// [`get_many`](super::Store::get_many) is `MGET`, [`put_many`](super::Store::put_many)
/// one pipeline of `SET`s, [`delete`](super::Store::delete) a `DEL`.
///
/// # Redis never takes the service down
///
/// Every command is bounded by [`timeout`](RedisStoreBuilder::timeout)
/// (50 ms by default), and reads and writes go through a
/// [`CircuitBreaker`] ([`breaker`](RedisStoreBuilder::breaker)): when
/// Redis is down, slow or refusing, a read is a miss and a write is
/// dropped, both counted, and no store method ever fails or panics. A
/// value that does not decode (another program's, an altered one,
/// another format) is a miss too, never served. Deletes are sent even
/// while the breaker is open (an invalidation is worth a bounded try);
/// one Redis does not acknowledge leaves the entry until its `PX` expiry.
///
/// # One connection, no pool
///
/// On one node, the store talks over one redis-rs
/// [`ConnectionManager`](redis::aio::ConnectionManager): a multiplexed
/// connection (commands from every task are pipelined on one
/// socket, their replies matched in order), so concurrent requests need
/// no pool of connections. The connection is made on first use; when it
/// drops, the manager reconnects in the background, once for all
/// callers, with exponential backoff and jitter (from 100 ms, doubling,
/// 6 attempts), and while the breaker is open no command (and so no
/// reconnect) is attempted until its next probe. A thousand instances
/// restarting Redis do not hammer it.
///
/// # Other instances' L1
///
/// Every write and delete is announced on the namespace's invalidation
/// channel in the same pipeline
/// ([`publish_invalidations`](RedisStoreBuilder::publish_invalidations)),
/// so that every instance's [`Tiered`](super::Tiered) store subscribed
/// with [`subscribe_invalidations`](super::Tiered::subscribe_invalidations)
/// drops its L1 copy.
///
/// # Keys are JSON both ways
///
/// Keys must implement `Serialize` and `DeserializeOwned`: a key is read
/// back from Redis (an invalidation message, a `SCAN`).
///
/// # Predicates, tags, sizes, the lease
///
/// [`delete_where`](super::Store::delete_where) (invalidation by
/// predicate) walks the namespace with an incremental `SCAN` (see there);
/// tags are kept in Redis so that invalidating one reaches what every
/// instance tagged ([`delete_tag`](super::Store::delete_tag)); an
/// optional stampede lease makes instances coalesce their loads
/// ([`stampede_lease`](RedisStoreBuilder::stampede_lease)).
/// [`len`](super::Store::len) and [`weighted_size`](super::Store::weighted_size) are 0
/// (Redis's `DBSIZE` and `INFO memory` have them).
///
/// # Clone
///
/// Clones share the connection, the breaker and the counters.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    cfg: Config,
    target: Target,
    breaker: CircuitBreaker,
    /// This store's id in the invalidation messages it sends (random).
    origin: u64,
    counters: Counters,
    /// Set when a command fails on the connection or times out; the next
    /// command Redis answers clears it and counts a recovery.
    down: AtomicBool,
    round_trip: Histogram,
    /// The store's claim on its name; publishes `counters` while alive.
    registration: Registration,
}

impl Publish for Shared {
    fn publish(&self, out: &mut Emit<'_>) {
        self.counters.publish(out);
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisStore")
            .field("name", &s.cfg.name)
            .field("prefix", &String::from_utf8_lossy(&s.cfg.prefix))
            .field("codec", &s.cfg.codec)
            .field("timeout", &s.cfg.timeout)
            .field("breaker", &s.breaker)
            .finish_non_exhaustive()
    }
}

/// Why a command gave no answer to use.
enum Failed {
    /// The breaker was open: not sent.
    Rejected,
    /// No answer within the timeout.
    Timeout,
    /// A connection or server error.
    Error,
    /// Redis answered that the key holds another type (another program's
    /// data under our key): the server is fine, the value is foreign.
    Foreign,
}

impl RedisStore {
    /// A builder for a store on `client`'s server, its keys under
    /// `namespace` (`<namespace>:v1:<key>`; ASCII letters, digits and
    /// `_ . : -`). Instances share entries when they use the same
    /// namespace and schema version; the namespace is the one thing two
    /// services must agree on. TLS, authentication and the database number
    /// are `client`'s (its URL).
    ///
    /// The store is named after the line that calls this unless
    /// [`RedisStoreBuilder::name`] names it.
    #[track_caller]
    pub fn builder(client: redis::Client, namespace: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(client, namespace.into())
    }

    /// A builder for a store on a Redis Cluster, through redis-rs's async
    /// cluster client: `nodes` are seed nodes (one is enough; the others
    /// are found from its slot map), each a client of one node's URL, and
    /// every setting is the same as [`builder`](Self::builder)'s. Keys,
    /// envelopes and invalidation messages are the same as on one node,
    /// so the same namespace can move between the two. Batches stay
    /// correct across slots: [`get_many`](super::Store::get_many)'s `MGET`s
    /// are split by slot (by redis-rs), writes go in one pipeline per slot,
    /// sent concurrently, and their announcements after them.
    /// [`delete_where`](super::Store::delete_where) walks every master in
    /// turn.
    #[track_caller]
    pub fn cluster_builder(
        nodes: impl IntoIterator<Item = redis::Client>,
        namespace: impl Into<String>,
    ) -> RedisStoreBuilder {
        RedisStoreBuilder::cluster(nodes.into_iter().collect(), namespace.into())
    }

    fn from_parts(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        let source: Weak<dyn Publish> = Arc::downgrade(&shared) as _;
        shared.registration.attach(source);
        Self { shared }
    }

    /// The store's name: the `name` label on its metrics and its
    /// breaker's (see [`RedisStoreBuilder::name`]).
    #[must_use]
    pub fn name(&self) -> Name {
        self.shared.cfg.name
    }

    /// The circuit breaker in front of Redis: read its state, or force it
    /// open for maintenance.
    #[must_use]
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.shared.breaker
    }

    /// The store's counts (the totals its metrics publish).
    #[must_use]
    pub fn snapshot(&self) -> RedisStoreSnapshot {
        self.shared.counters.snapshot()
    }

    /// What every key of the store starts with:
    /// `<namespace>:v<schema version>:`.
    #[must_use]
    pub fn key_prefix(&self) -> &[u8] {
        &self.shared.cfg.prefix
    }

    /// The Redis key the store uses for `key`: the [prefix](Self::key_prefix)
    /// and `key` as JSON (`prices:v1:42`, `prices:v1:"sku-7"`), or `None`
    /// if `key` does not serialize. For a given key type, two different
    /// keys never share a Redis key, provided their `Serialize` writes
    /// every field their `Eq` compares (a derived one does). Keys of
    /// stores with different namespaces or schema versions never collide.
    #[must_use]
    pub fn key_of<K: Serialize + ?Sized>(&self, key: &K) -> Option<Vec<u8>> {
        key::encode(&self.shared.cfg.prefix, key)
    }
}

impl Shared {
    fn new(
        cfg: Config,
        target: Target,
        breaker: CircuitBreaker,
        registration: Registration,
    ) -> Self {
        Self {
            round_trip: Histogram::new(ROUND_TRIP_SECONDS, cfg.name),
            cfg,
            target,
            breaker,
            // Never 0, the origin of messages for everyone.
            origin: buttress_core::rng::FastRng::from_entropy().next_u64() | 1,
            counters: Counters::default(),
            down: AtomicBool::new(false),
            registration,
        }
    }

    /// Adds to `batch` the announcement that `redis_key` changed, if this
    /// store announces its writes; returns whether it did.
    fn announce(&self, batch: &mut Batch, redis_key: &[u8]) -> bool {
        if !self.cfg.publish {
            return false;
        }
        let msg = bus::key_message(self.origin, self.cfg.prefix.len(), redis_key);
        batch
            .announce_on(redis_key)
            .cmd("PUBLISH")
            .arg(&*self.cfg.channel)
            .arg(msg)
            .ignore();
        true
    }

    fn clocks(&self) -> Clocks {
        Clocks::read(self.cfg.clock_offset_ms)
    }

    /// Sends one command (or pipeline) built by `send`, bounded by the
    /// timeout; `guarded` commands ask the breaker first and report to
    /// it. Every failure is counted here.
    async fn run<T, F, Fut>(&self, op: &'static str, guarded: bool, send: F) -> Result<T, Failed>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let permit = if guarded {
            match self.breaker.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.counters.rejected.incr();
                    return Err(Failed::Rejected);
                }
            }
        } else {
            None
        };
        let report = |outcome| {
            if let Some(permit) = permit {
                permit.record(outcome);
            }
        };
        let start = Instant::now();
        let reply = async {
            let conn = self.target.connection().await?;
            send(conn).await
        };
        match tokio::time::timeout(self.cfg.timeout, reply).await {
            Ok(Ok(answer)) => {
                self.round_trip.record(start.elapsed().as_secs_f64());
                report(Outcome::Success);
                self.answered();
                Ok(answer)
            }
            Ok(Err(error)) if error.code() == Some("WRONGTYPE") => {
                self.round_trip.record(start.elapsed().as_secs_f64());
                report(Outcome::Success);
                self.answered();
                Err(Failed::Foreign)
            }
            Ok(Err(error)) => {
                report(Outcome::Failure);
                Err(self.failed(op, error))
            }
            Err(_) => {
                report(Outcome::Failure);
                self.down.store(true, Ordering::Relaxed);
                self.counters.timeouts.incr();
                tracing::debug!(name = %self.cfg.name, op, timeout = ?self.cfg.timeout, "redis command timed out");
                Err(Failed::Timeout)
            }
        }
    }

    /// Redis answered: counts a recovery if commands had been failing.
    /// One load while all is well.
    #[inline]
    fn answered(&self) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            self.counters.recoveries.incr();
            tracing::debug!(name = %self.cfg.name, "redis answers again");
        }
    }

    fn failed(&self, op: &'static str, error: RedisError) -> Failed {
        // A reply Redis sent (an error answer) says the connection works;
        // anything else (I/O, a dropped connection) says it may not.
        if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
            self.down.store(true, Ordering::Relaxed);
        } else {
            self.answered();
        }
        self.counters.errors.incr();
        tracing::debug!(name = %self.cfg.name, op, %error, "redis command failed");
        Failed::Error
    }

    /// `GET key`: the reply, or `None` if there is none to use (counted;
    /// a foreign value as a decode failure).
    async fn get_one(&self, redis_key: &[u8]) -> Option<Value> {
        let mut get = redis::cmd("GET");
        get.arg(redis_key);
        let reply = self
            .run("get", true, |mut conn| async move {
                get.query_async::<Value>(&mut conn).await
            })
            .await;
        match reply {
            Ok(value) => Some(value),
            Err(Failed::Foreign) => {
                self.decode_failure(envelope::DecodeError::Foreign);
                None
            }
            Err(_) => None,
        }
    }

    /// The entry in one `GET`/`MGET` reply.
    fn read<V: DeserializeOwned>(&self, value: Value, clocks: Clocks) -> Option<Entry<V>> {
        match value {
            Value::Nil => {
                self.counters.misses.incr();
                None
            }
            Value::BulkString(bytes) => match envelope::decode(&bytes, clocks) {
                Ok(entry) => {
                    self.counters.hits.incr();
                    Some(entry)
                }
                Err(why) => {
                    self.decode_failure(why);
                    None
                }
            },
            _ => {
                self.decode_failure(envelope::DecodeError::Foreign);
                None
            }
        }
    }

    fn decode_failure(&self, why: envelope::DecodeError) {
        self.counters.decode_failures.incr();
        tracing::debug!(name = %self.cfg.name, ?why, "redis value not decoded: a miss");
    }

    /// Sends a batch of writes (`sets` of them `SET`s) of `keys` keys,
    /// each announced if the store announces, and counts the outcome.
    async fn send_writes(&self, batch: Batch, sets: u64, keys: u64) {
        let reply = self.run("set", true, |conn| batch.send(conn)).await;
        match reply {
            Ok(()) => {
                self.counters.writes.add(sets);
                if self.cfg.publish {
                    self.counters.published.add(keys);
                }
            }
            Err(_) => self.counters.writes_dropped.add(sets),
        }
    }

    /// Adds the write of `entry` under `key` to `batch`: `SET key envelope
    /// PX ms`, and its announcement. An entry that is not written (too
    /// large, not encodable, already unservable: counted) still replaces
    /// what Redis held: `DEL key` instead. Returns `None` if nothing was
    /// added (the key does not encode), else whether it is a `SET`.
    fn add_write<K, V>(
        &self,
        batch: &mut Batch,
        key: &K,
        entry: &Entry<V>,
        clocks: Clocks,
    ) -> Option<bool>
    where
        K: Serialize + ?Sized,
        V: Serialize,
    {
        let Some(key) = key::encode(&self.cfg.prefix, key) else {
            self.counters.encode_failures.incr();
            return None;
        };
        let px = clocks.ms_until(entry.stale_until());
        let value = match envelope::encode(entry, self.cfg.codec, clocks) {
            // Never servable again: nothing to share.
            _ if px == 0 => None,
            Ok(bytes) if bytes.len() > self.cfg.max_value_bytes => {
                self.counters.oversized.incr();
                None
            }
            Ok(bytes) => Some(bytes),
            Err(_) => {
                self.counters.encode_failures.incr();
                None
            }
        };
        let set = value.is_some();
        let pipe = batch.on(&key);
        match value {
            Some(bytes) => pipe.cmd("SET").arg(&key).arg(bytes).arg("PX").arg(px),
            None => pipe.cmd("DEL").arg(&key),
        }
        .ignore();
        self.announce(batch, &key);
        self.release_lease(batch, &key);
        Some(set)
    }
}
