//! Invalidation by predicate on Redis: an incremental `SCAN` of the
//! namespace, in bounded batches.

use redis::Value;
use serde::de::DeserializeOwned;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::conn::Conn;
use super::{Shared, envelope};
use crate::entry::Entry;

/// Keys asked of each `SCAN` (its `COUNT`), and so the most one `MGET`
/// and one `DEL` carry.
const SCAN_BATCH: usize = 256;

impl Shared {
    /// Deletes every entry of the namespace for which `pred` holds: walks
    /// the keyspace with `SCAN <cursor> MATCH <prefix>* COUNT 256`, reads
    /// each batch's entries with one `MGET`, and deletes the matching ones
    /// with one `DEL`. Every command is bounded by the timeout and never
    /// holds the server long (no `KEYS`); the walk stops at the first
    /// failed command (the entries it did not reach expire at their `PX`).
    /// Keys and values that do not decode are left alone. Returns the
    /// number of keys deleted.
    pub(super) async fn scan_delete<K, V>(
        &self,
        pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync),
    ) -> u64
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        let nodes = if self.target.is_cluster() {
            // A cursor is per node: each master is walked in turn.
            match self.masters().await {
                Some(masters) => masters.into_iter().map(Some).collect(),
                None => return 0,
            }
        } else {
            vec![None]
        };
        let pattern = [&self.cfg.prefix[..], b"*"].concat();
        let mut deleted = 0;
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let Some((next, keys)) = self.scan_step(node.as_ref(), cursor, &pattern).await
                else {
                    return deleted;
                };
                if !keys.is_empty() {
                    let Some(n) = self.delete_matching(&keys, pred).await else {
                        return deleted;
                    };
                    deleted += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        deleted
    }

    /// One `SCAN` step, on `node` of a cluster (host, port) or on the one
    /// node.
    async fn scan_step(
        &self,
        node: Option<&(String, u16)>,
        cursor: u64,
        pattern: &[u8],
    ) -> Option<(u64, Vec<Vec<u8>>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH);
        self.run("scan", true, |conn| async move {
            match (conn, node) {
                (Conn::Cluster(mut conn), Some((host, port))) => {
                    let at = SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    };
                    let reply = conn
                        .route_command(scan, RoutingInfo::SingleNode(at))
                        .await?;
                    Ok(redis::from_redis_value(reply)?)
                }
                (mut conn, _) => scan.query_async(&mut conn).await,
            }
        })
        .await
        .ok()
    }

    /// The cluster's masters (host, port), from `CLUSTER SLOTS`.
    async fn masters(&self) -> Option<Vec<(String, u16)>> {
        let slots = self
            .run("cluster slots", true, |mut conn| async move {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<Vec<Vec<Value>>>(&mut conn)
                    .await
            })
            .await
            .ok()?;
        let mut masters = Vec::new();
        for range in slots {
            // [start, end, [host, port, id, ...], replicas...]
            let Some(Value::Array(master)) = range.into_iter().nth(2) else {
                continue;
            };
            let mut fields = master.into_iter();
            let (Some(host), Some(port)) = (fields.next(), fields.next()) else {
                continue;
            };
            let (Ok(host), Ok(port)) = (
                redis::from_redis_value::<String>(host),
                redis::from_redis_value::<u16>(port),
            ) else {
                continue;
            };
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
        Some(masters)
    }

    /// Reads `keys`' entries and deletes those `pred` holds for; `None` if
    /// a command failed.
    async fn delete_matching<K, V>(
        &self,
        keys: &[Vec<u8>],
        pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync),
    ) -> Option<u64>
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        let mut mget = redis::cmd("MGET");
        for key in keys {
            mget.arg(key);
        }
        let values = self
            .run("mget", true, |mut conn| async move {
                mget.query_async::<Vec<Value>>(&mut conn).await
            })
            .await
            .ok()?;
        let clocks = self.clocks();
        let mut del = redis::cmd("DEL");
        let mut n = 0;
        for (redis_key, value) in keys.iter().zip(values) {
            // Gone since the SCAN, or not one of ours: nothing to judge.
            let Value::BulkString(bytes) = value else {
                continue;
            };
            let Ok(key) = serde_json::from_slice::<K>(&redis_key[self.cfg.prefix.len()..]) else {
                continue;
            };
            let Ok(entry) = envelope::decode::<V>(&bytes, clocks) else {
                continue;
            };
            if pred(&key, &entry) {
                del.arg(redis_key);
                n += 1;
            }
        }
        if n > 0 {
            self.run("del", false, |mut conn| async move {
                del.query_async::<()>(&mut conn).await
            })
            .await
            .ok()?;
        }
        Some(n)
    }
}
