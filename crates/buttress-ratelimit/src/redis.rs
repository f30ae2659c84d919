//! GCRA in Redis: one script call per decision, on Redis's own clock.

use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::OnceLock;
use std::time::Duration;

use buttress_breaker::CircuitBreaker;
use buttress_core::ConfigError;
use buttress_core::classify::Outcome;
use buttress_core::telemetry::Name;
use buttress_core::time::Origin;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::{RedisSpec, RedisTarget};
use crate::decision::Decision;
use crate::local::Local;
use crate::quota::Quota;
use crate::telemetry::Counters;

/// The Lua script every shared decision runs (published so that it can be
/// read, or timed on its own): GCRA on `KEYS[1]` (the theoretical arrival time, in microseconds of the
/// server's clock): `ARGV[1]` the emission interval, `ARGV[2]` the burst
/// tolerance, both in microseconds. Returns `{allowed, wait, reset}` in
/// microseconds. The key expires when its arrival time passes, when it
/// would mean nothing any more. `TIME` is the server's clock, so the
/// instances' clocks do not matter (Redis ≥ 5 replicates a script's
/// effects, not the script, so reading the time is allowed).
pub const REDIS_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - now
if ahead > tau then
  return {0, ahead - tau, 0}
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
return {1, 0, next - now}
";

/// Where decisions go: one node over a reconnecting `ConnectionManager`,
/// or a Redis Cluster (the script touches one key, so the cluster routes
/// each call to the key's node).
enum Target {
    Node {
        client: redis::Client,
        manager: ConnectionManagerConfig,
        conn: OnceLock<ConnectionManager>,
    },
    Cluster {
        client: ClusterClient,
        conn: OnceLock<ClusterConnection>,
    },
}

/// A connection to either target.
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

pub(crate) struct Remote<K> {
    name: Name,
    target: Target,
    script: redis::Script,
    prefix: String,
    render: fn(&K) -> String,
    timeout: Duration,
    breaker: CircuitBreaker,
    pub(crate) fallback: Local<K>,
    /// The local pre-check: keys Redis rejected, with the (local) time
    /// before which Redis would reject them again. GCRA only moves a key's
    /// arrival time later, so answering these keys locally until then
    /// rejects nothing Redis would admit, and saves the round trip for a
    /// tenant far over quota.
    blocked: quick_cache::sync::Cache<K, u64>,
    origin: Origin,
}

fn micros(ns: u64) -> u64 {
    ns.div_ceil(1_000).max(1)
}

impl<K: Eq + Hash + Clone> Remote<K> {
    pub(crate) fn new(
        spec: RedisSpec<K>,
        name: Name,
        timeout: Duration,
        breaker: Option<CircuitBreaker>,
        max_keys: usize,
    ) -> Result<Self, ConfigError> {
        let breaker = match breaker {
            Some(b) => b,
            None => CircuitBreaker::builder()
                .name(name)
                .open_duration(Duration::from_secs(1))
                .max_open_duration(Duration::from_secs(30))
                .build()?,
        };
        let connect = timeout.max(Duration::from_millis(250));
        let target = match spec.target {
            RedisTarget::Node(client) => Target::Node {
                client,
                manager: ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    .set_connection_timeout(Some(connect)),
                conn: OnceLock::new(),
            },
            RedisTarget::Cluster(nodes) => Target::Cluster {
                client: ClusterClient::builder(
                    nodes.iter().map(|n| n.get_connection_info().clone()),
                )
                .response_timeout(timeout)
                .connection_timeout(connect)
                .build()
                .map_err(|e| ConfigError::new("rate limit", "redis_cluster", e.to_string()))?,
                conn: OnceLock::new(),
            },
        };
        Ok(Self {
            name,
            target,
            script: redis::Script::new(REDIS_SCRIPT),
            prefix: spec.namespace,
            render: spec.render,
            timeout,
            breaker,
            fallback: Local::new(max_keys, Origin::now()),
            blocked: quick_cache::sync::Cache::new(max_keys),
            origin: Origin::now(),
        })
    }

    /// The connection, made on first use (a node's lazily; a cluster's by
    /// asking the seed nodes for the slot map, within the caller's
    /// timeout: concurrent first calls may each connect, one is kept).
    async fn connection(&self) -> redis::RedisResult<Conn> {
        match &self.target {
            Target::Node {
                client,
                manager,
                conn,
            } => {
                if let Some(c) = conn.get() {
                    return Ok(Conn::Node(c.clone()));
                }
                let made =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())?;
                Ok(Conn::Node(conn.get_or_init(|| made).clone()))
            }
            Target::Cluster { client, conn } => {
                if let Some(c) = conn.get() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let made = client.get_async_connection().await?;
                Ok(Conn::Cluster(conn.get_or_init(|| made).clone()))
            }
        }
    }

    /// The decision from Redis, or `None` when Redis cannot give one in
    /// time (counted as a Redis error unless the breaker refused).
    pub(crate) async fn check(
        &self,
        key: &K,
        quota: &Quota,
        counters: &Counters,
    ) -> Option<Decision> {
        let now = self.origin.elapsed_nanos();
        if let Some(until) = self.blocked.get(key)
            && until > now
        {
            return Some(Decision {
                name: self.name,
                quota: *quota,
                allowed: false,
                after_ns: until - now,
            });
        }
        let permit = self.breaker.try_acquire().ok()?;
        let mut redis_key = String::with_capacity(self.prefix.len() + 24);
        let _ = write!(redis_key, "{}:{}", self.prefix, (self.render)(key));
        let call = async {
            let mut conn = self.connection().await?;
            self.script
                .key(&redis_key)
                .arg(micros(quota.interval_ns()))
                .arg(quota.tau_ns() / 1_000)
                .invoke_async::<(i64, i64, i64)>(&mut conn)
                .await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((allowed, wait_us, reset_us))) => {
                permit.record(Outcome::Success);
                let us = |v: i64| u64::try_from(v).unwrap_or(0).saturating_mul(1_000);
                if allowed != 1 {
                    // From the time of the request: the reply came later,
                    // so the key is unblocked early, never late.
                    self.blocked
                        .insert(key.clone(), now.saturating_add(us(wait_us)));
                }
                Some(Decision {
                    name: self.name,
                    quota: *quota,
                    allowed: allowed == 1,
                    // The script works in whole microseconds (interval rounded
                    // up, tolerance down): take the reset as early as it may
                    // be so `remaining` counts as the in-process limiter does.
                    after_ns: if allowed == 1 {
                        us(reset_us).saturating_sub(999)
                    } else {
                        us(wait_us)
                    },
                })
            }
            Ok(Err(error)) => {
                permit.record(Outcome::Failure);
                counters.redis_errors.incr();
                tracing::debug!(name = %self.name, %error, "redis rate limit decision failed");
                None
            }
            Err(_) => {
                permit.record(Outcome::Failure);
                counters.redis_errors.incr();
                tracing::debug!(name = %self.name, timeout = ?self.timeout, "redis rate limit decision timed out");
                None
            }
        }
    }
}
