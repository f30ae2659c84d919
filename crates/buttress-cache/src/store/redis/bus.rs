//! Cross-instance invalidation of [`Tiered`] L1s over Redis pub/sub.
//!
//! Every write and delete of a [`RedisStore`] is announced on the
//! namespace's channel, in the pipeline that carries it; a [`Tiered`]
//! store subscribed to the channel drops the key from its L1 when another
//! instance announces it. A message is
//! `[origin: u64 LE][kind: u8][the key as JSON]`: the origin is the
//! announcing store's random id, so a store ignores its own messages
//! (its writes already updated its own L1).
//!
//! Pub/sub delivers at most once: a message sent while the subscription
//! is down is lost. So the listener empties L1 every time it
//! (re)subscribes, after the subscription is confirmed: whatever it
//! missed is no longer in L1, and whatever comes after reaches it.

use std::time::Duration;

use buttress_core::rng::FastRng;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use serde::de::DeserializeOwned;

use super::{RedisStore, Shared};
use crate::store::Store;
use crate::store::tiered::{L1Access, Listener, Tiered};

/// Drop one key: the message ends with its JSON.
const KEY: u8 = 1;
/// Drop everything (a predicate deletion, which cannot be shipped).
const ALL: u8 = 2;
/// Origin and kind.
const HEADER: usize = 9;
/// The origin of a message every instance applies, the sender included
/// (no store's own origin is 0).
pub(crate) const EVERYONE: u64 = 0;

/// The first wait before subscribing again after a drop or a failed
/// attempt; it doubles up to [`RECONNECT_MAX`], and each wait is drawn
/// between half and all of it, so instances spread their reconnects.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often a quiet subscription is checked with a `PING`: a
/// connection that died without a goodbye (a partition) is noticed
/// within this and the store's connect timeout.
const HEALTH_CHECK: Duration = Duration::from_secs(1);

/// The channel of the namespace whose keys start with `prefix`.
pub(crate) fn channel(prefix: &[u8]) -> Box<[u8]> {
    [prefix, b"#invalidations"].concat().into_boxed_slice()
}

/// The message announcing a change to `redis_key` (a key of the store
/// whose prefix is `prefix_len` bytes long).
pub(crate) fn key_message(origin: u64, prefix_len: usize, redis_key: &[u8]) -> Vec<u8> {
    let json = &redis_key[prefix_len..];
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.extend_from_slice(&origin.to_le_bytes());
    out.push(KEY);
    out.extend_from_slice(json);
    out
}

/// The message asking every other instance to empty its L1.
pub(crate) fn all_message(origin: u64) -> Vec<u8> {
    let mut out = origin.to_le_bytes().to_vec();
    out.push(ALL);
    out
}

/// What another instance's message asks for.
#[derive(Debug, PartialEq, Eq)]
enum Message<'a> {
    Key(&'a [u8]),
    All,
}

/// The message in `payload`, or `None` if it is this store's own
/// (`origin`) or not a message of this format.
fn parse(payload: &[u8], origin: u64) -> Option<Message<'_>> {
    let (head, json) = payload.split_at_checked(HEADER)?;
    let from = u64::from_le_bytes(head[..8].try_into().ok()?);
    if from == origin {
        return None;
    }
    match head[8] {
        KEY => Some(Message::Key(json)),
        ALL if json.is_empty() => Some(Message::All),
        _ => None,
    }
}

impl<L1> Tiered<L1, RedisStore> {
    /// Keeps L1 coherent with the other instances: subscribes to the
    /// namespace's invalidation channel (on a connection of its own) and
    /// drops from L1 every key another instance writes or deletes, within
    /// one message delivery. Every instance of the namespace must announce
    /// its writes ([`publish_invalidations`], on by default).
    ///
    /// Pub/sub does not replay what a subscriber missed, so L1 is emptied
    /// each time the subscription is made, the first time and after every
    /// reconnect (a missed message never leaves a stale copy in L1 past
    /// the reconnect; while the subscription is down, L1 copies live at
    /// most their TTL). Reconnects back off from 50 ms to 5 s, jittered.
    /// Another instance's predicate deletion
    /// ([`delete_where`](Store::delete_where)) empties L1 too.
    ///
    /// The subscription runs on a task of this tokio runtime until the
    /// last clone of the store is dropped. Messages from this store
    /// ([`RedisStore`] clones included) are ignored: give each `Tiered`
    /// store of a process its own `RedisStore` if several share a
    /// namespace.
    ///
    /// ```no_run
    /// use buttress_cache::{redis, store::{QuickCacheStore, RedisStore, Tiered}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let l2 = RedisStore::builder(client, "prices").build()?;
    /// let l1 = QuickCacheStore::<u32, u64>::builder(64 << 20).build()?;
    /// let store = Tiered::new(l1, l2).subscribe_invalidations();
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (like `tokio::spawn`).
    ///
    /// [`publish_invalidations`]: super::RedisStoreBuilder::publish_invalidations
    #[must_use]
    pub fn subscribe_invalidations<K, V>(self) -> Self
    where
        L1: Store<K, V> + Clone,
        K: DeserializeOwned + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let task = tokio::spawn(listen::<K, V, L1>(self.l2().clone(), self.l1_access()));
        self.with_listener(Listener::new(task.abort_handle()))
    }
}

/// Subscribes, applies messages, and subscribes again when the
/// connection drops, forever (the task is aborted with its store).
async fn listen<K, V, L1>(store: RedisStore, l1: L1Access<L1>)
where
    L1: Store<K, V>,
    K: DeserializeOwned + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let s = &*store.shared;
    let rng = FastRng::from_entropy();
    let mut wait = RECONNECT_MIN;
    let mut subscribed_before = false;
    for attempt in 0.. {
        let client = s.target.pubsub_client(attempt);
        match tokio::time::timeout(s.cfg.connect_timeout, subscribe(s, client)).await {
            Ok(Ok((sink, stream))) => {
                if subscribed_before {
                    s.counters.reconnects.incr();
                }
                subscribed_before = true;
                // Confirmed: from here on every message reaches us, and
                // whatever was sent before is dropped with L1.
                l1.flush::<K, V>().await;
                s.counters.l1_flushes.incr();
                wait = RECONNECT_MIN;
                serve::<K, V, L1>(s, &l1, sink, stream).await;
                tracing::debug!(name = %s.cfg.name, "redis invalidation subscription dropped");
            }
            Ok(Err(error)) => {
                tracing::debug!(name = %s.cfg.name, %error, "redis invalidation subscription failed");
            }
            Err(_) => {
                tracing::debug!(name = %s.cfg.name, "redis invalidation subscription timed out");
            }
        }
        let half = wait / 2;
        tokio::time::sleep(half + half.mul_f64(rng.next_f64())).await;
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

async fn subscribe(
    s: &Shared,
    client: &redis::Client,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(&*s.cfg.channel).await?;
    Ok((sink, stream))
}

/// Applies messages until the connection drops or stops answering.
async fn serve<K, V, L1>(
    s: &Shared,
    l1: &L1Access<L1>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) where
    L1: Store<K, V>,
    K: DeserializeOwned + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    loop {
        let msg = match tokio::time::timeout(HEALTH_CHECK, stream.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => return,
            Err(_) => {
                // Quiet: make sure the connection still answers.
                let ping = tokio::time::timeout(s.cfg.connect_timeout, sink.ping::<redis::Value>());
                if !matches!(ping.await, Ok(Ok(_))) {
                    return;
                }
                continue;
            }
        };
        match parse(msg.get_payload_bytes(), s.origin) {
            Some(Message::Key(json)) => match serde_json::from_slice::<K>(json) {
                Ok(key) => {
                    l1.drop_key::<K, V>(&key).await;
                    s.counters.received.incr();
                }
                Err(error) => {
                    tracing::debug!(name = %s.cfg.name, %error, "redis invalidation of a key not of this type: ignored");
                }
            },
            Some(Message::All) => {
                l1.flush::<K, V>().await;
                s.counters.received.incr();
                s.counters.l1_flushes.incr();
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_own_ones_are_ignored() {
        let key = b"prices:v1:\"sku-7\"";
        let msg = key_message(7, 10, key);
        assert_eq!(parse(&msg, 8), Some(Message::Key(b"\"sku-7\"")));
        assert_eq!(parse(&msg, 7), None, "own message");
        let to_all = key_message(EVERYONE, 10, key);
        assert_eq!(parse(&to_all, 7), Some(Message::Key(b"\"sku-7\"")));
        assert_eq!(parse(&all_message(7), 8), Some(Message::All));
        assert_eq!(parse(b"short", 8), None);
        let mut odd = all_message(7);
        odd[8] = 9;
        assert_eq!(parse(&odd, 8), None, "unknown kind");
        assert_eq!(&*channel(b"prices:v1:"), b"prices:v1:#invalidations");
    }
}
