//! The Redis store's builder and validated configuration.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use buttress_breaker::CircuitBreaker;
use buttress_core::telemetry::{Name, Registration, register_catalog};

use super::bus::channel;
use super::conn::Target;
use super::envelope::Codec;
use super::key::{prefix, valid_namespace};
use super::telemetry::{KIND, REDIS_METRICS};
use super::{RedisStore, Shared};
use crate::error::{ConfigError, config_error};

/// The validated configuration.
#[derive(Debug)]
pub(crate) struct Config {
    /// The effective name (after [`Registration`]).
    pub(crate) name: Name,
    /// `<namespace>:v<schema version>:`.
    pub(crate) prefix: Box<[u8]>,
    pub(crate) codec: Codec,
    pub(crate) timeout: Duration,
    pub(crate) max_value_bytes: usize,
    pub(crate) clock_offset_ms: i64,
    /// The invalidation channel: `<prefix>#invalidations`.
    pub(crate) channel: Box<[u8]>,
    /// Whether writes and deletes are announced on `channel`.
    pub(crate) publish: bool,
    pub(crate) connect_timeout: Duration,
    /// The stampede lease's time, if the store takes leases.
    pub(crate) lease: Option<Duration>,
}

/// Builds a [`RedisStore`]. Every setter documents its default and where
/// it comes from; [`build`](Self::build) validates them.
///
/// ```
/// use std::time::Duration;
/// use buttress_cache::store::{Codec, RedisStore};
///
/// let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
/// let store = RedisStore::builder(client, "prices")
///     .name("prices-l2")
///     .timeout(Duration::from_millis(20))
///     .codec(Codec::Postcard)
///     .build()
///     .expect("valid configuration");
/// assert_eq!(store.name(), "prices-l2");
/// assert_eq!(store.key_prefix(), b"prices:v1:");
/// ```
#[must_use]
pub struct RedisStoreBuilder {
    target: Spec,
    namespace: String,
    name: Name,
    schema_version: u32,
    codec: Codec,
    timeout: Duration,
    connect_timeout: Duration,
    max_value_bytes: usize,
    breaker: Option<CircuitBreaker>,
    clock_offset_ms: i64,
    publish: bool,
    lease: Option<Duration>,
}

/// What the builder was given to reach Redis.
enum Spec {
    Node(redis::Client),
    Cluster(Vec<redis::Client>),
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("cluster", &matches!(self.target, Spec::Cluster(_)))
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("schema_version", &self.schema_version)
            .field("codec", &self.codec)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("breaker", &self.breaker)
            .field("publish_invalidations", &self.publish)
            .field("stampede_lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    #[track_caller]
    pub(crate) fn new(client: redis::Client, namespace: String) -> Self {
        Self::with_target(Spec::Node(client), namespace)
    }

    #[track_caller]
    pub(crate) fn cluster(nodes: Vec<redis::Client>, namespace: String) -> Self {
        Self::with_target(Spec::Cluster(nodes), namespace)
    }

    #[track_caller]
    fn with_target(target: Spec, namespace: String) -> Self {
        Self {
            target,
            namespace,
            name: Name::caller(),
            schema_version: 1,
            codec: Codec::default(),
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            max_value_bytes: 1 << 20,
            breaker: None,
            clock_offset_ms: 0,
            publish: true,
            lease: None,
        }
    }

    /// The store's name: the `name` label on its metrics
    /// ([`REDIS_METRICS`](crate::REDIS_METRICS)) and its breaker's, and
    /// the `name` field of its `tracing` events. Default: the source
    /// location of the [`RedisStore::builder`] call; `name#2` while
    /// another live store has the same one. Not part of the keys (the
    /// namespace is).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// The version of the values' schema, in every key
    /// (`<namespace>:v<version>:<key>`). Bump it when the value type's
    /// serialized form changes: instances on the new version never read
    /// the old entries (which expire on their own) and old instances
    /// never read the new ones. Default: 1.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// How values are written. Default: [`Codec::Postcard`] (compact
    /// binary; chosen by measurement, see `docs/redis.md`). Values
    /// written with either codec are read.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The longest a command may take, waiting for a connection
    /// included. A read still running then is a miss, a write is dropped,
    /// and both count as a breaker failure. Default: 50 ms, the issue's
    /// figure for the cache path (redis-rs's own response timeout is
    /// 500 ms: too long to wait on a cache). Must be greater than zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest one connection attempt may take, in the background
    /// (no request waits for it beyond [`timeout`](Self::timeout)).
    /// Default: 1 s, redis-rs's default. Must be greater than zero.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest envelope written, in bytes (56 bytes of header and the
    /// encoded value). A larger entry is not written, and counted. Default:
    /// 1 MiB, the cache's own default
    /// [`max_entry_bytes`](crate::CacheBuilder::max_entry_bytes). Must be
    /// greater than zero.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// The circuit breaker that guards Redis calls. Default: a breaker of
    /// the store's name over the last 100 calls, tripping at a 50 %
    /// failure rate once 20 calls are in (the breaker's own defaults),
    /// open for 1 s at first, doubling up to 30 s while Redis stays down
    /// (shorter than the breaker's 30 s / 300 s defaults: a probe costs
    /// one bounded call, and the cache tier should come back soon).
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Whether every write and delete is also announced on the
    /// namespace's invalidation channel (`PUBLISH <namespace>:v<schema
    /// version>:#invalidations`, in the same pipeline: no extra round
    /// trip), so that the L1 of every instance's
    /// [`Tiered`](crate::store::Tiered) store subscribed to it
    /// ([`subscribe_invalidations`](crate::store::Tiered::subscribe_invalidations))
    /// drops its copy. Default: `true`. Turn it off only where no instance
    /// keeps an L1 in front of this namespace: an instance that does not
    /// announce its writes leaves the others' L1 copies stale until their
    /// TTL.
    pub fn publish_invalidations(mut self, publish: bool) -> Self {
        self.publish = publish;
        self
    }

    /// Turns on the distributed stampede lease: after a miss, an instance
    /// takes the key's lease (`SET <namespace>:v<n>:#lease:<key> <id> NX
    /// PX <lease>`) and loads; another instance that misses the same key
    /// meanwhile waits, polling Redis, until the entry appears (served
    /// without a backend call), the lease frees, or `lease` passes, then
    /// loads itself. The holder's write releases the lease; a holder that
    /// dies or is cancelled holds it until it expires. So across
    /// instances one loads a key at a time, and a waiting request waits
    /// at most `lease` (and nothing while Redis is in trouble). Set it a
    /// little above the backend's usual load time. Default: off (each
    /// instance loads on its own; the cache still coalesces within one).
    /// Must be greater than zero.
    pub fn stampede_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Test hook: moves this store's wall clock by `offset_ms`, to
    /// stand for an instance whose clock is off.
    #[doc(hidden)]
    pub fn wall_clock_offset_ms(mut self, offset_ms: i64) -> Self {
        self.clock_offset_ms = offset_ms;
        self
    }

    /// Validates the configuration and builds the store. Connecting is
    /// lazy: the store builds while Redis is down, and its first command
    /// connects (on the tokio runtime it runs on).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting at fault: `namespace` (empty,
    /// or a character other than ASCII letters, digits and `_ . : -`),
    /// `nodes` (a cluster store without seed nodes, or nodes redis-rs
    /// refuses: different credentials), `name` (empty), `stampede_lease`,
    /// `timeout`, `connect_timeout` or `max_value_bytes`
    /// (zero).
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        if !valid_namespace(&self.namespace) {
            return Err(config_error(
                "namespace",
                format!(
                    "must be non-empty ASCII letters, digits and `_ . : -`, got {:?}",
                    self.namespace
                ),
            ));
        }
        if matches!(&self.target, Spec::Cluster(nodes) if nodes.is_empty()) {
            return Err(config_error(
                "nodes",
                "a cluster needs at least one seed node",
            ));
        }
        if self.name.as_str().is_empty() {
            return Err(config_error("name", "must not be empty"));
        }
        for (field, d) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
            ("stampede_lease", self.lease.unwrap_or(Duration::MAX)),
        ] {
            if d.is_zero() {
                return Err(config_error(field, "must be greater than zero"));
            }
        }
        if self.max_value_bytes == 0 {
            return Err(config_error("max_value_bytes", "must be greater than zero"));
        }
        register_catalog(REDIS_METRICS);
        let registration = Registration::new(KIND, self.name);
        let name = registration.name();
        let breaker = match self.breaker {
            Some(breaker) => breaker,
            None => CircuitBreaker::builder()
                .name(name)
                .open_duration(Duration::from_secs(1))
                .max_open_duration(Duration::from_secs(30))
                .build()?,
        };
        let target = match self.target {
            Spec::Node(client) => Target::Node {
                client,
                manager: redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.timeout))
                    .set_connection_timeout(Some(self.connect_timeout)),
                conn: OnceLock::new(),
            },
            Spec::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::builder(
                    nodes.iter().map(|n| n.get_connection_info().clone()),
                )
                .response_timeout(self.timeout)
                .connection_timeout(self.connect_timeout)
                .build()
                .map_err(|e| config_error("nodes", e.to_string()))?;
                Target::Cluster {
                    client,
                    conn: tokio::sync::OnceCell::new(),
                    nodes: nodes.into_boxed_slice(),
                }
            }
        };
        let prefix = prefix(&self.namespace, self.schema_version);
        let config = Config {
            name,
            channel: channel(&prefix),
            publish: self.publish,
            connect_timeout: self.connect_timeout,
            lease: self.lease,
            prefix,
            codec: self.codec,
            timeout: self.timeout,
            max_value_bytes: self.max_value_bytes,
            clock_offset_ms: self.clock_offset_ms,
        };
        Ok(RedisStore::from_parts(Shared::new(
            config,
            target,
            breaker,
            registration,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> redis::Client {
        redis::Client::open("redis://127.0.0.1:1/").unwrap()
    }

    #[test]
    fn bad_settings_are_named() {
        let field = |b: RedisStoreBuilder| b.build().unwrap_err().field();
        assert_eq!(field(RedisStore::builder(client(), "")), "namespace");
        assert_eq!(field(RedisStore::builder(client(), "a b")), "namespace");
        assert_eq!(field(RedisStore::builder(client(), "ns").name("")), "name");
        assert_eq!(
            field(RedisStore::builder(client(), "ns").timeout(Duration::ZERO)),
            "timeout"
        );
        assert_eq!(
            field(RedisStore::builder(client(), "ns").connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            field(RedisStore::builder(client(), "ns").max_value_bytes(0)),
            "max_value_bytes"
        );
        assert_eq!(
            field(RedisStore::builder(client(), "ns").stampede_lease(Duration::ZERO)),
            "stampede_lease"
        );
    }

    #[test]
    fn unnamed_stores_are_named_after_their_line_and_never_share_a_name() {
        let a = RedisStore::builder(client(), "ns").build().unwrap();
        let b = RedisStore::builder(client(), "ns").build().unwrap();
        assert!(a.name().as_str().contains("config.rs:"), "{}", a.name());
        assert_ne!(a.name(), b.name());
        let c = RedisStore::builder(client(), "ns")
            .name("same")
            .build()
            .unwrap();
        let d = RedisStore::builder(client(), "ns")
            .name("same")
            .build()
            .unwrap();
        assert_eq!((c.name().as_str(), d.name().as_str()), ("same", "same#2"));
        assert_eq!(c.breaker().name(), "same");
    }
}
