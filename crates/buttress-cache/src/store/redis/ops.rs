//! `Store` for [`RedisStore`]: the commands each method sends.

use futures_util::future::try_join_all;
use redis::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::Batch;
use super::{RedisStore, bus, key};
use crate::entry::{Entry, Tag};
use crate::store::Store;

/// Keys per `MGET` in [`Store::get_many`]: a long batch is split into
/// several `MGET`s sent in one pipeline (one round trip), so that no
/// single command holds the server for long.
const MGET_BATCH: usize = 256;

impl<K, V> Store<K, V> for RedisStore
where
    K: Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn get(&self, key: &K) -> Option<Entry<V>> {
        let s = &*self.shared;
        let Some(key) = key::encode(&s.cfg.prefix, key) else {
            s.counters.encode_failures.incr();
            return None;
        };
        match s.get_one(&key).await {
            Some(Value::Nil) if s.cfg.lease.is_some() => {
                s.counters.misses.incr();
                s.lease_or_wait(&key).await
            }
            Some(value) => s.read(value, s.clocks()),
            None => None,
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
        let mgets: Vec<redis::Cmd> = encoded
            .chunks(MGET_BATCH)
            .map(|batch| {
                let mut mget = redis::cmd("MGET");
                for (_, key) in batch {
                    mget.arg(key.as_slice());
                }
                mget
            })
            .collect();
        let cluster = s.target.is_cluster();
        let reply = s
            .run("mget", true, |mut conn| async move {
                if cluster {
                    // No pipeline across slots: each MGET on its own,
                    // which redis-rs splits by slot and reassembles.
                    try_join_all(mgets.iter().map(|mget| {
                        let mut conn = conn.clone();
                        async move { mget.query_async::<Vec<Value>>(&mut conn).await }
                    }))
                    .await
                } else {
                    let mut pipe = redis::pipe();
                    for mget in mgets {
                        pipe.add_command(mget);
                    }
                    pipe.query_async::<Vec<Vec<Value>>>(&mut conn).await
                }
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
        let mut batch = Batch::new(s.target.is_cluster());
        let Some(set) = s.add_write(&mut batch, &key, &entry, s.clocks()) else {
            return;
        };
        s.send_writes(batch, u64::from(set), 1).await;
    }

    async fn put_tagged(&self, key: K, entry: Entry<V>, tags: &[Tag]) {
        let s = &*self.shared;
        let clocks = s.clocks();
        let mut batch = Batch::new(s.target.is_cluster());
        let Some(set) = s.add_write(&mut batch, &key, &entry, clocks) else {
            return;
        };
        if set {
            s.add_tags(&mut batch, &key, &entry, tags, clocks);
        }
        s.send_writes(batch, u64::from(set), 1).await;
    }

    /// Deletes every key any instance wrote with `tag` (recorded by
    /// [`put_tagged`](Store::put_tagged) in a set beside the entries,
    /// walked with `SSCAN` in batches of 256), and announces each to every
    /// subscribed instance, this one included.
    async fn delete_tag(&self, tag: &str) {
        self.shared.delete_tag(tag).await;
    }

    async fn put_many(&self, entries: Vec<(K, Entry<V>)>) {
        let s = &*self.shared;
        let clocks = s.clocks();
        let mut batch = Batch::new(s.target.is_cluster());
        let (mut sets, mut keys) = (0, 0);
        for (key, entry) in &entries {
            if let Some(set) = s.add_write(&mut batch, key, entry, clocks) {
                sets += u64::from(set);
                keys += 1;
            }
        }
        if keys > 0 {
            s.send_writes(batch, sets, keys).await;
        }
    }

    async fn delete(&self, key: &K) {
        let s = &*self.shared;
        let Some(key) = key::encode(&s.cfg.prefix, key) else {
            s.counters.encode_failures.incr();
            return;
        };
        let mut batch = Batch::new(s.target.is_cluster());
        batch.on(&key).cmd("DEL").arg(&key).ignore();
        let announced = u64::from(s.announce(&mut batch, &key));
        let reply = s.run("del", false, |conn| batch.send(conn)).await;
        if reply.is_ok() {
            s.counters.published.add(announced);
        }
    }

    /// Deletes the matching entries from Redis with an incremental
    /// `SCAN` of the namespace (256 keys a step: `SCAN`, `MGET`, `DEL`,
    /// each bounded by the timeout; never `KEYS`), then asks every other
    /// instance's subscribed [`Tiered`](crate::store::Tiered) L1 to empty
    /// itself, since a predicate cannot be shipped. A
    /// [`Tiered`](crate::store::Tiered) store applies it to its own L1.
    /// The cost grows with the namespace: every entry crosses the network
    /// once. An entry rewritten between its read and the `DEL` is
    /// deleted too (a spurious miss, never a stale read).
    async fn delete_where(&self, pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync)) {
        let s = &*self.shared;
        s.scan_delete(pred).await;
        if !s.cfg.publish {
            return;
        }
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&*s.cfg.channel).arg(bus::all_message(s.origin));
        let reply = s
            .run("publish", false, |mut conn| async move {
                publish.query_async::<()>(&mut conn).await
            })
            .await;
        if reply.is_ok() {
            s.counters.published.incr();
        }
    }

    fn weighted_size(&self) -> u64 {
        0
    }

    fn len(&self) -> u64 {
        0
    }
}
