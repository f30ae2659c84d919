//! `RedisStore`: the shared L2 tier on Redis.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};

use buttress_breaker::CircuitBreaker;
use buttress_core::classify::Outcome;
use buttress_core::telemetry::{Emit, Histogram, Name, Publish, Registration};
use buttress_core::time::Instant;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Store;
use crate::entry::Entry;

mod config;
mod envelope;
mod key;
mod telemetry;

pub use self::config::RedisStoreBuilder;
pub use self::envelope::Codec;
pub use self::telemetry::{REDIS_METRICS, RedisStoreSnapshot};

use self::config::Config;
use self::envelope::Clocks;
use self::telemetry::{Counters, ROUND_TRIP_SECONDS};

/// Keys per `MGET` in [`Store::get_many`]: a long batch is split into
/// several `MGET`s sent in one pipeline (one round trip), so that no
/// single command holds the server for long.
const MGET_BATCH: usize = 256;

/// A [`Store`] on Redis: the tier several instances of a service share.
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
/// [`get_many`](Store::get_many) is `MGET`, [`put_many`](Store::put_many)
/// one pipeline of `SET`s, [`delete`](Store::delete) a `DEL`.
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
/// The store talks over one redis-rs [`ConnectionManager`]: a
/// multiplexed connection (commands from every task are pipelined on one
/// socket, their replies matched in order), so concurrent requests need
/// no pool of connections. The connection is made on first use; when it
/// drops, the manager reconnects in the background, once for all
/// callers, with exponential backoff and jitter (from 100 ms, doubling,
/// 6 attempts), and while the breaker is open no command (and so no
/// reconnect) is attempted until its next probe. A thousand instances
/// restarting Redis do not hammer it.
///
/// # What it does not do (yet)
///
/// [`delete_where`](Store::delete_where) (invalidation by predicate) does
/// nothing on Redis: the entries it would match expire at their `PX`.
/// [`len`](Store::len) and [`weighted_size`](Store::weighted_size) are 0
/// (Redis's `DBSIZE` and `INFO memory` have them). Redis Cluster, the
/// cross-instance invalidation of [`Tiered`](super::Tiered)'s L1 and the
/// distributed stampede lease come later (see `docs/redis.md`).
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
    client: redis::Client,
    manager: ConnectionManagerConfig,
    conn: OnceLock<ConnectionManager>,
    breaker: CircuitBreaker,
    counters: Counters,
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
        client: redis::Client,
        manager: ConnectionManagerConfig,
        breaker: CircuitBreaker,
        registration: Registration,
    ) -> Self {
        Self {
            round_trip: Histogram::new(ROUND_TRIP_SECONDS, cfg.name),
            cfg,
            client,
            manager,
            conn: OnceLock::new(),
            breaker,
            counters: Counters::default(),
            registration,
        }
    }

    fn clocks(&self) -> Clocks {
        Clocks::read(self.cfg.clock_offset_ms)
    }

    /// The connection, made (lazily: it connects on first use, on the
    /// runtime of the caller) the first time a command needs it.
    fn connection(&self) -> RedisResult<ConnectionManager> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let conn =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.manager.clone())?;
        Ok(self.conn.get_or_init(|| conn).clone())
    }

    /// Sends one command (or pipeline) built by `send`, bounded by the
    /// timeout; `guarded` commands ask the breaker first and report to
    /// it. Every failure is counted here.
    async fn run<T, F, Fut>(&self, op: &'static str, guarded: bool, send: F) -> Result<T, Failed>
    where
        F: FnOnce(ConnectionManager) -> Fut,
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
        let conn = match self.connection() {
            Ok(conn) => conn,
            Err(error) => {
                report(Outcome::Failure);
                return Err(self.failed(op, error));
            }
        };
        let start = Instant::now();
        match tokio::time::timeout(self.cfg.timeout, send(conn)).await {
            Ok(Ok(answer)) => {
                self.round_trip.record(start.elapsed().as_secs_f64());
                report(Outcome::Success);
                Ok(answer)
            }
            Ok(Err(error)) if error.code() == Some("WRONGTYPE") => {
                self.round_trip.record(start.elapsed().as_secs_f64());
                report(Outcome::Success);
                Err(Failed::Foreign)
            }
            Ok(Err(error)) => {
                report(Outcome::Failure);
                Err(self.failed(op, error))
            }
            Err(_) => {
                report(Outcome::Failure);
                self.counters.timeouts.incr();
                tracing::debug!(name = %self.cfg.name, op, timeout = ?self.cfg.timeout, "redis command timed out");
                Err(Failed::Timeout)
            }
        }
    }

    fn failed(&self, op: &'static str, error: RedisError) -> Failed {
        self.counters.errors.incr();
        tracing::debug!(name = %self.cfg.name, op, %error, "redis command failed");
        Failed::Error
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

    /// `SET key envelope PX ms` for `entry`, or `None` (counted) when it
    /// is not written: too large, not encodable, or already unservable.
    fn set_command<K, V>(&self, key: &K, entry: &Entry<V>, clocks: Clocks) -> Option<redis::Cmd>
    where
        K: Serialize + ?Sized,
        V: Serialize,
    {
        let px = clocks.ms_until(entry.stale_until());
        if px == 0 {
            return None; // never servable again: nothing to share
        }
        let (Some(key), Ok(bytes)) = (
            key::encode(&self.cfg.prefix, key),
            envelope::encode(entry, self.cfg.codec, clocks),
        ) else {
            self.counters.encode_failures.incr();
            return None;
        };
        if bytes.len() > self.cfg.max_value_bytes {
            self.counters.oversized.incr();
            return None;
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(bytes).arg("PX").arg(px);
        Some(cmd)
    }
}

impl<K, V> Store<K, V> for RedisStore
where
    K: Serialize + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn get(&self, key: &K) -> Option<Entry<V>> {
        let s = &*self.shared;
        let Some(key) = key::encode(&s.cfg.prefix, key) else {
            s.counters.encode_failures.incr();
            return None;
        };
        let mut get = redis::cmd("GET");
        get.arg(key);
        let reply = s
            .run("get", true, |mut conn| async move {
                get.query_async::<Value>(&mut conn).await
            })
            .await;
        match reply {
            Ok(value) => s.read(value, s.clocks()),
            Err(Failed::Foreign) => {
                s.decode_failure(envelope::DecodeError::Foreign);
                None
            }
            Err(_) => None,
        }
    }

    async fn get_many(&self, keys: &[K]) -> Vec<Option<Entry<V>>> {
        let s = &*self.shared;
        let mut out: Vec<Option<Entry<V>>> = (0..keys.len()).map(|_| None).collect();
        // (position in `keys`, Redis key) of the keys that encode.
        let encoded: Vec<(usize, Vec<u8>)> = keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| match key::encode(&s.cfg.prefix, k) {
                Some(key) => Some((i, key)),
                None => {
                    s.counters.encode_failures.incr();
                    None
                }
            })
            .collect();
        if encoded.is_empty() {
            return out;
        }
        let mut pipe = redis::pipe();
        for batch in encoded.chunks(MGET_BATCH) {
            let mut mget = redis::cmd("MGET");
            for (_, key) in batch {
                mget.arg(key.as_slice());
            }
            pipe.add_command(mget);
        }
        let reply = s
            .run("mget", true, |mut conn| async move {
                pipe.query_async::<Vec<Vec<Value>>>(&mut conn).await
            })
            .await;
        let Ok(batches) = reply else {
            return out;
        };
        let clocks = s.clocks();
        let mut values = batches.into_iter().flatten();
        for (i, _) in &encoded {
            out[*i] = values.next().and_then(|v| s.read(v, clocks));
        }
        out
    }

    async fn put(&self, key: K, entry: Entry<V>) {
        let s = &*self.shared;
        let Some(set) = s.set_command(&key, &entry, s.clocks()) else {
            return;
        };
        let reply = s
            .run("set", true, |mut conn| async move {
                set.query_async::<()>(&mut conn).await
            })
            .await;
        match reply {
            Ok(()) => s.counters.writes.incr(),
            Err(_) => s.counters.writes_dropped.incr(),
        }
    }

    async fn put_many(&self, entries: Vec<(K, Entry<V>)>) {
        let s = &*self.shared;
        let clocks = s.clocks();
        let mut pipe = redis::pipe();
        let mut n = 0;
        for (key, entry) in &entries {
            if let Some(set) = s.set_command(key, entry, clocks) {
                pipe.add_command(set).ignore();
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        let reply = s
            .run("set", true, |mut conn| async move {
                pipe.query_async::<()>(&mut conn).await
            })
            .await;
        match reply {
            Ok(()) => s.counters.writes.add(n),
            Err(_) => s.counters.writes_dropped.add(n),
        }
    }

    async fn delete(&self, key: &K) {
        let s = &*self.shared;
        let Some(key) = key::encode(&s.cfg.prefix, key) else {
            s.counters.encode_failures.incr();
            return;
        };
        let mut del = redis::cmd("DEL");
        del.arg(key);
        let _ = s
            .run("del", false, |mut conn| async move {
                del.query_async::<()>(&mut conn).await
            })
            .await;
    }

    /// Does nothing: Redis is not scanned for a predicate (the entries it
    /// would match expire at their `PX`). A [`Tiered`](super::Tiered)
    /// store applies it to its L1.
    async fn delete_where(&self, _pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync)) {}

    fn weighted_size(&self) -> u64 {
        0
    }

    fn len(&self) -> u64 {
        0
    }
}
