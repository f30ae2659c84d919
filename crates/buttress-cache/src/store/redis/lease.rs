//! The distributed stampede lease: across instances, one loads a missing
//! key while the others wait briefly for it to appear in Redis.

use std::time::Duration;

use buttress_core::time::Instant;
use redis::Value;
use serde::de::DeserializeOwned;

use super::Shared;
use super::conn::Batch;
use crate::entry::Entry;

/// A waiter polls Redis 16 times per lease, but no more often than every
/// `MIN_POLL` (Redis's load) and no less often than every `MAX_POLL` (the
/// waiter's extra latency once the entry is there).
const MAX_POLL: Duration = Duration::from_millis(50);
const MIN_POLL: Duration = Duration::from_millis(2);

/// What `SET lease me NX PX ttl GET` found.
enum Lease {
    /// The lease is this store's (taken now, or earlier by another task
    /// of this instance): load.
    Ours,
    /// Another instance holds it: wait.
    Theirs,
    /// No answer: load (Redis trouble never makes a request wait).
    Unknown,
}

impl Shared {
    /// `<prefix>#lease:<key as JSON>`: no key's JSON starts with `#`.
    fn lease_key(&self, redis_key: &[u8]) -> Vec<u8> {
        let json = &redis_key[self.cfg.prefix.len()..];
        [&self.cfg.prefix[..], b"#lease:", json].concat()
    }

    /// Adds to `batch` the release of `redis_key`'s lease (its write is in
    /// the same batch), if the store takes leases.
    pub(super) fn release_lease(&self, batch: &mut Batch, redis_key: &[u8]) {
        if self.cfg.lease.is_some() {
            let lease = self.lease_key(redis_key);
            batch.on(&lease).cmd("DEL").arg(&lease).ignore();
        }
    }

    async fn try_lease(&self, lease_key: &[u8], ttl: Duration) -> Lease {
        let mut set = redis::cmd("SET");
        set.arg(lease_key)
            .arg(self.origin)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .arg("GET");
        let reply = self
            .run("lease", true, |mut conn| async move {
                set.query_async::<Option<u64>>(&mut conn).await
            })
            .await;
        match reply {
            Ok(None) => Lease::Ours,
            Ok(Some(holder)) if holder == self.origin => Lease::Ours,
            Ok(Some(_)) => Lease::Theirs,
            Err(_) => Lease::Unknown,
        }
    }

    /// After a miss of `redis_key`: takes the lease and answers `None`
    /// (this instance loads, and its write releases the lease); or, if
    /// another instance holds it, polls Redis until the entry appears (the
    /// answer), the lease frees (taken: `None`), or the lease time passes
    /// (`None`: load anyway). A holder that died or was cancelled frees the
    /// lease at its expiry.
    pub(super) async fn lease_or_wait<V: DeserializeOwned>(
        &self,
        redis_key: &[u8],
    ) -> Option<Entry<V>> {
        let ttl = self.cfg.lease?;
        let lease_key = self.lease_key(redis_key);
        if !matches!(self.try_lease(&lease_key, ttl).await, Lease::Theirs) {
            return None;
        }
        self.counters.lease_waits.incr();
        let poll = (ttl / 16).clamp(MIN_POLL, MAX_POLL);
        let deadline = Instant::now() + ttl;
        while Instant::now() < deadline {
            tokio::time::sleep(poll).await;
            match self.get_one(redis_key).await {
                Some(Value::Nil) => {}
                Some(value) => {
                    let entry = self.read(value, self.clocks());
                    if entry.is_some() {
                        self.counters.lease_fills.incr();
                    }
                    return entry;
                }
                None => return None,
            }
            if !matches!(self.try_lease(&lease_key, ttl).await, Lease::Theirs) {
                return None;
            }
        }
        None
    }
}
