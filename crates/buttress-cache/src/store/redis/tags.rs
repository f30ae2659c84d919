//! Tags on Redis: for each tag, the set of keys written with it, kept
//! beside the entries and expiring with the longest-lived of them, so that
//! invalidating a tag on one instance finds what every instance wrote.

use serde::Serialize;

use super::conn::Batch;
use super::envelope::Clocks;
use super::{Shared, bus, key};
use crate::entry::{Entry, Tag};

/// Members asked of each `SSCAN` (its `COUNT`), and so the most one
/// batch of deletes carries.
const SSCAN_BATCH: usize = 256;

impl Shared {
    /// `<prefix>#tag:<tag>`: the set of the keys (as JSON) written with
    /// `tag`. No key's JSON starts with `#`, so it is never an entry's key.
    fn tag_key(&self, tag: &str) -> Vec<u8> {
        [&self.cfg.prefix[..], b"#tag:", tag.as_bytes()].concat()
    }

    /// Adds to `batch` the pairs of `key` with each of `tags`: `SADD`, and
    /// an expiry no earlier than the entry's (`PEXPIRE … NX` for a new set,
    /// `PEXPIRE … GT` to extend one; Redis 7).
    pub(super) fn add_tags<K>(
        &self,
        batch: &mut Batch,
        key: &K,
        entry: &Entry<impl Sized>,
        tags: &[Tag],
        clocks: Clocks,
    ) where
        K: Serialize + ?Sized,
    {
        let px = clocks.ms_until(entry.stale_until());
        let Some(redis_key) = key::encode(&self.cfg.prefix, key) else {
            return;
        };
        if px == 0 {
            return;
        }
        let member = &redis_key[self.cfg.prefix.len()..];
        for tag in tags {
            let set = self.tag_key(tag);
            batch
                .on(&set)
                .cmd("SADD")
                .arg(&set)
                .arg(member)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&set)
                .arg(px)
                .arg("NX")
                .ignore()
                .cmd("PEXPIRE")
                .arg(&set)
                .arg(px)
                .arg("GT")
                .ignore();
        }
    }

    /// Deletes every key recorded with `tag`, in batches (`SSCAN … COUNT
    /// 256`, then one batch of `DEL`s with their announcements, to every
    /// instance this one included), then the set. Stops at the first
    /// failed command (what it did not reach expires at its `PX`).
    pub(super) async fn delete_tag(&self, tag: &str) {
        let set = self.tag_key(tag);
        let mut cursor: u64 = 0;
        loop {
            let mut sscan = redis::cmd("SSCAN");
            sscan.arg(&set).arg(cursor).arg("COUNT").arg(SSCAN_BATCH);
            let Ok((next, members)) = self
                .run("sscan", false, |mut conn| async move {
                    sscan.query_async::<(u64, Vec<Vec<u8>>)>(&mut conn).await
                })
                .await
            else {
                return;
            };
            if !members.is_empty() {
                let mut batch = Batch::new(self.target.is_cluster());
                let mut announced = 0;
                for member in &members {
                    let redis_key = [&self.cfg.prefix[..], member].concat();
                    batch.on(&redis_key).cmd("DEL").arg(&redis_key).ignore();
                    if self.cfg.publish {
                        let msg =
                            bus::key_message(bus::EVERYONE, self.cfg.prefix.len(), &redis_key);
                        batch
                            .announce_on(&redis_key)
                            .cmd("PUBLISH")
                            .arg(&*self.cfg.channel)
                            .arg(msg)
                            .ignore();
                        announced += 1;
                    }
                }
                if self
                    .run("del", false, |conn| batch.send(conn))
                    .await
                    .is_err()
                {
                    return;
                }
                self.counters.published.add(announced);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut del = redis::cmd("DEL");
        del.arg(&set);
        let _ = self
            .run("del", false, |mut conn| async move {
                del.query_async::<()>(&mut conn).await
            })
            .await;
    }
}
