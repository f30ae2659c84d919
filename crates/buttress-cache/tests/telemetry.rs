//! Telemetry: a cache built before the application installs its recorder
//! publishes every metric of [`METRICS`] into it, labelled with its name,
//! with the counts [`Cache::stats`] gives; names are never shared and
//! never "default"; a hit never touches the recorder.
//!
//! No global recorder is installed here: the recorder is a local one, and
//! counts reach it through an explicit `flush`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use buttress_cache::store::{QuickCacheStore, Store};
use buttress_cache::{Cache, CacheLayer, METRICS};
use buttress_core::telemetry::{MetricKind, flush};
use common::{Answer, Backend, get, settle};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::advance;
use tower::{Layer, ServiceExt};

type Quick = QuickCacheStore<u64, Answer>;

/// One published series: metric name, its labels, its value.
type Series = (String, BTreeMap<String, String>, DebugValue);

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Every series `recorder` holds.
fn series(recorder: &DebuggingRecorder) -> Vec<Series> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.key().name().to_owned(), labels, value)
        })
        .collect()
}

#[test]
fn a_cache_built_before_the_recorder_publishes_every_metric_into_it() {
    let rt = paused_runtime();
    // Built before any recorder exists.
    let cache: Cache<u64, Answer, Quick> = Cache::builder(
        QuickCacheStore::builder(2_000)
            .estimated_entries(20)
            .build()
            .unwrap(),
    )
    .name("telemetry-prices")
    .ttl(Duration::from_secs(10))
    .ttl_jitter(0.0)
    .xfetch_beta(None)
    .stale_while_revalidate(Duration::from_secs(10))
    .stale_if_error(Duration::from_secs(60))
    .load_timeout(Duration::from_secs(5))
    .weigher(|k: &u64, _: &Answer| if *k == 77 { 5_000 } else { 100 })
    .max_entry_bytes(1_000)
    .build()
    .unwrap();
    assert_eq!(cache.name(), "telemetry-prices");
    let backend = Backend::default();
    let svc =
        CacheLayer::new(cache.clone(), |k: &u64| (*k != 999).then_some(*k)).layer(backend.clone());

    let recorder = DebuggingRecorder::new();
    // The load-time histogram is recorded where loads happen: run them
    // with the recorder in force on this (the runtime's only) thread.
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            get(&svc, 1).await.unwrap(); // miss
            get(&svc, 4).await.unwrap(); // miss
            get(&svc, 1).await.unwrap(); // hit
            get(&svc, 999).await.unwrap(); // bypass
            get(&svc, 77).await.unwrap(); // miss, too heavy to cache

            advance(Duration::from_secs(11)).await;
            get(&svc, 1).await.unwrap(); // stale, and a refresh
            settle().await;

            advance(Duration::from_secs(14)).await;
            backend.set_failing(true);
            get(&svc, 4).await.unwrap(); // stale-if-error
            backend.set_failing(false);

            backend.set_hanging(true);
            let leader = tokio::spawn(svc.clone().oneshot(5));
            let waiter = tokio::spawn(svc.clone().oneshot(5)); // coalesced
            settle().await;
            advance(Duration::from_secs(5)).await;
            assert!(leader.await.unwrap().is_err(), "timed out");
            assert!(waiter.await.unwrap().is_err(), "timed out");
            backend.set_hanging(false);

            cache.invalidate(&4).await;
            for k in 100..140 {
                get(&svc, k).await.unwrap(); // more than the store holds
            }
        });
    });
    metrics::with_local_recorder(&recorder, flush);

    let stats = cache.snapshot();
    assert!(stats.hits >= 1 && stats.stale_served == 1 && stats.bypassed == 1);
    assert!(stats.refreshes == 1 && stats.stale_if_error == 1 && stats.oversized == 1);
    assert!(stats.coalesced_waiters == 1 && stats.timeouts >= 1 && stats.invalidations == 1);
    assert!(stats.evictions.size > 0, "{stats:?}");

    let ours: Vec<Series> = series(&recorder)
        .into_iter()
        .filter(|(_, labels, _)| labels.get("name").map(String::as_str) == Some("telemetry-prices"))
        .collect();
    let names: BTreeSet<&str> = ours.iter().map(|(n, ..)| n.as_str()).collect();
    let listed: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
    assert_eq!(names, listed, "the cache emits exactly what METRICS lists");

    for info in METRICS {
        let mut keys: Vec<&str> = vec!["name"];
        keys.extend(info.labels);
        keys.sort_unstable();
        for (_, labels, value) in ours.iter().filter(|(n, ..)| n == info.name) {
            let got: Vec<&str> = labels.keys().map(String::as_str).collect();
            assert_eq!(got, keys, "{}'s labels", info.name);
            let kind_matches = matches!(
                (info.kind, value),
                (MetricKind::Counter, DebugValue::Counter(_))
                    | (MetricKind::Gauge, DebugValue::Gauge(_))
                    | (MetricKind::Histogram, DebugValue::Histogram(_))
            );
            assert!(kind_matches, "{} is a {:?}", info.name, info.kind);
        }
    }

    let value = |metric: &str, label: Option<(&str, &str)>| value(&ours, metric, label);
    let counter = |metric: &str, label: Option<(&str, &str)>| match value(metric, label) {
        DebugValue::Counter(n) => *n,
        other => panic!("{metric}: {other:?}"),
    };
    let gauge = |metric: &str| match value(metric, None) {
        DebugValue::Gauge(g) => g.into_inner(),
        other => panic!("{metric}: {other:?}"),
    };
    let requests = |outcome| counter("buttress_cache_requests_total", Some(("outcome", outcome)));
    assert_eq!(requests("hit"), stats.hits);
    assert_eq!(requests("stale"), 1);
    assert_eq!(requests("miss"), stats.misses);
    assert_eq!(requests("bypass"), 1);
    let total = |metric: &str| counter(metric, None);
    assert_eq!(total("buttress_cache_loads_total"), stats.loads);
    assert_eq!(
        total("buttress_cache_load_failures_total"),
        stats.load_failures
    );
    assert_eq!(total("buttress_cache_load_timeouts_total"), stats.timeouts);
    assert_eq!(total("buttress_cache_coalesced_waiters_total"), 1);
    assert_eq!(total("buttress_cache_refreshes_total"), 1);
    assert_eq!(total("buttress_cache_refreshes_dropped_total"), 0);
    assert_eq!(total("buttress_cache_stale_if_error_total"), 1);
    assert_eq!(total("buttress_cache_oversized_total"), 1);
    assert_eq!(total("buttress_cache_invalidations_total"), 1);
    assert_eq!(total("buttress_cache_errors_served_total"), 0);
    let evictions = |cause| counter("buttress_cache_evictions_total", Some(("cause", cause)));
    assert_eq!(evictions("size"), stats.evictions.size);
    assert_eq!(evictions("expired"), 0);
    assert_eq!(gauge("buttress_cache_entries"), cache.store().len() as f64);
    assert!(gauge("buttress_cache_entries") > 0.0);
    assert_eq!(
        gauge("buttress_cache_weighted_size"),
        cache.store().weighted_size() as f64
    );
    assert_eq!(gauge("buttress_cache_loads_in_flight"), 0.0);
    assert_eq!(gauge("buttress_cache_tag_index_pairs"), 0.0);
    match value("buttress_cache_load_seconds", None) {
        DebugValue::Histogram(samples) => {
            assert_eq!(samples.len() as u64, stats.loads, "one sample per load");
            let timed_out = samples.iter().filter(|s| s.into_inner() == 5.0).count();
            assert!(
                timed_out >= 1,
                "the timed-out load took its bound: {samples:?}"
            );
        }
        other => panic!("load_seconds: {other:?}"),
    }
}

#[test]
fn a_hit_never_touches_the_recorder() {
    let rt = paused_runtime();
    let cache: Cache<u64, Answer, Quick> = Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .xfetch_beta(None)
    .build()
    .unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(Backend::default());
    rt.block_on(get(&svc, 1)).unwrap();

    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            for _ in 0..100 {
                get(&svc, 1).await.unwrap();
            }
        });
    });
    assert_eq!(cache.snapshot().hits, 100);
    assert!(
        recorder.snapshotter().snapshot().into_vec().is_empty(),
        "hits are published later, never recorded on the call"
    );
}

#[test]
fn unnamed_caches_are_named_after_the_line_that_built_them_and_never_share_a_name() {
    let store = || {
        QuickCacheStore::<u64, Answer>::builder(1 << 20)
            .build()
            .unwrap()
    };
    let a = Cache::builder(store()).build().unwrap();
    let b = Cache::builder(store()).build().unwrap();
    let (a_line, b_line) = (line_of(a.name().as_str()), line_of(b.name().as_str()));
    assert!(
        a.name().as_str().contains("tests/telemetry.rs:"),
        "{}",
        a.name()
    );
    assert_eq!(b_line, a_line + 1, "{} then {}", a.name(), b.name());

    // One line building two live caches: the second gets a suffix.
    let twins: Vec<_> = (0..2)
        .map(|_| Cache::builder(store()).build().unwrap())
        .collect();
    assert_eq!(twins[1].name().as_str(), format!("{}#2", twins[0].name()));
    let named = Cache::builder(store())
        .name("telemetry-twin")
        .build()
        .unwrap();
    let again = Cache::builder(store())
        .name("telemetry-twin")
        .build()
        .unwrap();
    assert_eq!(
        (named.name(), again.name()),
        ("telemetry-twin".into(), "telemetry-twin#2".into())
    );
    drop((named, again));
    let later = Cache::builder(store())
        .name("telemetry-twin")
        .build()
        .unwrap();
    assert_eq!(
        later.name(),
        "telemetry-twin",
        "a dropped cache frees its name"
    );

    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, flush);
    let published = series(&recorder);
    assert!(!published.is_empty());
    for (metric, labels, _) in &published {
        assert_ne!(
            labels.get("name").map(String::as_str),
            Some("default"),
            "{metric}"
        );
    }
    for cache in [&a, &b] {
        assert!(
            published
                .iter()
                .any(|(_, labels, _)| labels.get("name").map(String::as_str)
                    == Some(cache.name().as_str())),
            "{} publishes",
            cache.name()
        );
    }
}

#[test]
fn an_empty_name_is_a_config_error() {
    let err = Cache::<u64, Answer, _>::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .name("")
    .build()
    .unwrap_err();
    assert_eq!(err.field(), "name");
}

/// The value of the series `metric` (with `label`, if given) in `all`.
fn value<'a>(all: &'a [Series], metric: &str, label: Option<(&str, &str)>) -> &'a DebugValue {
    let found = all.iter().find(|(n, labels, _)| {
        n == metric && label.is_none_or(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
    });
    &found
        .unwrap_or_else(|| panic!("{metric} {label:?} was published"))
        .2
}

fn line_of(name: &str) -> u32 {
    name.rsplit(':').next().unwrap().parse().unwrap()
}
