//! Tracing: each load runs in a `buttress.cache.load` span carrying the
//! cache's name and whether it is a background refresh; the cache's events
//! carry the field `name`.

mod common;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_cache::store::QuickCacheStore;
use buttress_cache::{Cache, CacheLayer};
use common::{Backend, get, settle};
use tokio::time::advance;
use tower::Layer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What was seen: (span or event name, its fields as text).
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A subscriber that keeps the name and fields of every span and event
/// of this crate.
struct Collect {
    seen: Seen,
    next_id: AtomicU64,
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Collect {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("buttress_cache")
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(Vec::new());
        span.record(&mut fields);
        let name = span.metadata().name().to_owned();
        self.seen.lock().unwrap().push((name, fields.0));
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.seen
            .lock()
            .unwrap()
            .push(("event".to_owned(), fields.0));
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn each_load_runs_in_a_span_naming_the_cache() {
    let seen = Seen::default();
    let subscriber = Collect {
        seen: Arc::clone(&seen),
        next_id: AtomicU64::new(0),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let cache = Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .name("spans-users")
    .ttl(Duration::from_secs(10))
    .ttl_jitter(0.0)
    .xfetch_beta(None)
    .stale_while_revalidate(Duration::from_secs(10))
    .build()
    .unwrap();
    let backend = Backend::default();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(backend.clone());

    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            get(&svc, 1).await.unwrap(); // a load
            get(&svc, 1).await.unwrap(); // a hit: nothing
            advance(Duration::from_secs(11)).await;
            get(&svc, 1).await.unwrap(); // stale: a refresh
            settle().await;
            backend.set_failing(true);
            get(&svc, 2).await.unwrap_err(); // a failed load: an event
            cache.invalidate(&1).await; // an event
        });
    });

    let seen = seen.lock().unwrap();
    let loads: Vec<_> = seen
        .iter()
        .filter(|(name, _)| name == "buttress.cache.load")
        .map(|(_, fields)| (field(fields, "name"), field(fields, "refresh")))
        .collect();
    assert_eq!(
        loads,
        [
            (Some("spans-users"), Some("false")),
            (Some("spans-users"), Some("true")),
            (Some("spans-users"), Some("false")),
        ],
        "one span per load, none for the hit"
    );
    let events: Vec<_> = seen.iter().filter(|(name, _)| name == "event").collect();
    assert!(events.len() >= 2, "{events:?}");
    for (_, fields) in events {
        assert_eq!(field(fields, "name"), Some("spans-users"), "{fields:?}");
        assert_eq!(field(fields, "cache"), None, "the old field is gone");
    }
}
