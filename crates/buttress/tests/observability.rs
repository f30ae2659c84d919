//! `docs/observability.md` lists exactly the metrics the layers emit: every
//! crate's `METRICS` catalog matches the document's tables row for row
//! (name, type, unit, labels), and every layer, built before the recorder
//! exists and then driven, emits exactly the catalog's metrics into it.
#![cfg(all(
    feature = "breaker",
    feature = "cache",
    feature = "retry",
    feature = "limit",
    feature = "keyed",
    feature = "ratelimit",
    feature = "http-cache"
))]

use std::collections::BTreeSet;
use std::time::Duration;

use buttress::breaker::{CircuitBreaker, CircuitBreakerLayer, KeyedCircuitBreaker};
use buttress::cache::store::QuickCacheStore;
use buttress::cache::{Cache, CacheLayer};
use buttress::core::telemetry::{MetricInfo, MetricKind};
use buttress::limit::algorithm::{Fixed, Vegas};
use buttress::limit::throttle::{AdaptiveThrottle, AdaptiveThrottleLayer};
use buttress::limit::{AdaptiveLimit, AdaptiveLimitLayer};
use buttress::retry::{HedgeLayer, HedgePolicy, RetryLayer, RetryPolicy};
use metrics_util::debugging::DebuggingRecorder;
use tower::{Layer, ServiceExt, service_fn};

const DOC: &str = include_str!("../../../docs/observability.md");

/// Every crate's catalog.
fn catalog() -> Vec<&'static MetricInfo> {
    [
        buttress::breaker::METRICS,
        buttress::limit::METRICS,
        buttress::retry::METRICS,
        buttress::cache::METRICS,
        buttress::cache::REDIS_METRICS,
        buttress::ratelimit::METRICS,
        buttress::http_cache::METRICS,
        buttress::http_cache::HTTP_CACHE_METRICS,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// One table row as the document writes it: name, type, unit, labels.
type Row = (String, String, String, String);

fn row(m: &MetricInfo) -> Row {
    let mut labels = vec!["`name`".to_string()];
    labels.extend(m.labels.iter().map(|l| format!("`{l}`")));
    (
        format!("`{}`", m.name),
        m.kind.as_str().to_string(),
        m.unit.as_str().to_string(),
        labels.join(", "),
    )
}

/// The rows of the document's metric tables: lines starting with
/// "| `buttress_".
fn documented() -> BTreeSet<Row> {
    DOC.lines()
        .filter(|l| l.starts_with("| `buttress_"))
        .map(|l| {
            let cells: Vec<_> = l.split('|').map(str::trim).collect();
            (
                cells[1].to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
                cells[4].to_string(),
            )
        })
        .collect()
}

#[test]
fn the_document_lists_exactly_the_catalog() {
    let listed: BTreeSet<Row> = catalog().into_iter().map(row).collect();
    let documented = documented();
    let missing: Vec<_> = catalog()
        .into_iter()
        .filter(|m| !documented.contains(&row(m)))
        .map(|m| {
            let (n, k, u, l) = row(m);
            format!("| {n} | {k} | {u} | {l} | {} |", m.help)
        })
        .collect();
    let stale: Vec<_> = documented.difference(&listed).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/observability.md is out of date.\nrows to add (or fix):\n{}\nrows the code does not emit:\n{stale:#?}",
        missing.join("\n")
    );
    // One name per metric, and the naming rules.
    let names: BTreeSet<_> = catalog().iter().map(|m| m.name).collect();
    assert_eq!(names.len(), catalog().len(), "a metric is listed twice");
    for m in catalog() {
        assert!(m.name.starts_with("buttress_"), "{}", m.name);
        assert_eq!(
            m.kind == MetricKind::Counter,
            m.name.ends_with("_total"),
            "{}: counters, and only they, end in _total",
            m.name
        );
        assert!(
            !m.labels.contains(&"name"),
            "{}: `name` is implicit",
            m.name
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_layer_built_before_the_recorder_emits_exactly_its_catalog() {
    // Everything is built before any recorder exists.
    let breaker = CircuitBreaker::builder().name("obs").build().unwrap();
    let keyed =
        KeyedCircuitBreaker::<String>::builder(CircuitBreaker::builder().name("obs-keyed"), 4)
            .per_key_metrics(true)
            .build()
            .unwrap();
    let limit = AdaptiveLimit::builder(Vegas::builder().build().unwrap())
        .name("obs")
        .build()
        .unwrap();
    let partitioned = AdaptiveLimit::builder(Fixed::new(4).unwrap())
        .name("obs-partitioned")
        .partition("a", 0.5)
        .partition("b", 0.5)
        .build()
        .unwrap();
    let throttle = AdaptiveThrottle::builder().name("obs").build().unwrap();
    let retry = RetryPolicy::builder().name("obs").build().unwrap();
    let hedge = HedgePolicy::builder().name("obs").build().unwrap();
    let cache = Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .name("obs")
    .build()
    .unwrap();

    // One request a minute, no burst: the second call is rate limited.
    let rate = buttress::ratelimit::RateLimiter::builder(
        buttress::ratelimit::Quota::new(1, Duration::from_secs(60))
            .unwrap()
            .class("obs-class"),
    )
    .name("obs")
    .build()
    .unwrap();

    let headers = buttress::http_cache::CacheHeaders::builder()
        .name("obs")
        .build()
        .unwrap();
    let http_cache = buttress::http_cache::HttpCache::builder(
        QuickCacheStore::<String, buttress::http_cache::Variants>::builder(1 << 20)
            .build()
            .unwrap(),
    )
    .name("obs")
    .build()
    .unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let backend = service_fn(|k: u32| async move {
        tokio::time::sleep(const { Duration::from_millis(1) }).await;
        Ok::<u32, std::io::Error>(k)
    });
    let svc = CacheLayer::new(cache.clone(), |k: &u32| Some(*k)).layer(
        RetryLayer::new(retry.clone()).layer(
            HedgeLayer::new(hedge.clone()).layer(
                CircuitBreakerLayer::new(breaker.clone()).layer(
                    AdaptiveThrottleLayer::new(throttle.clone())
                        .layer(AdaptiveLimitLayer::new(limit.clone()).layer(backend)),
                ),
            ),
        ),
    );
    for k in [1, 1, 2] {
        svc.clone().oneshot(k).await.unwrap();
    }
    let limited = buttress::ratelimit::RateLimitLayer::new(rate.clone(), |k: &u32| Some(*k)).layer(
        service_fn(|k: u32| async move { Ok::<u32, std::io::Error>(k) }),
    );
    limited.clone().oneshot(1).await.unwrap();
    limited.clone().oneshot(1).await.unwrap_err();
    let _tenant = keyed.get(&"tenant".to_string());
    let _ = (&headers, &http_cache);
    let _permit = partitioned.try_acquire_in("a").unwrap();

    buttress::telemetry::flush();
    let emitted: BTreeSet<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| {
            k.key()
                .labels()
                .any(|l| l.key() == "name" && l.value().starts_with("obs"))
        })
        .map(|(k, ..)| k.key().name().to_string())
        .collect();
    // The Redis store's series need a Redis server: buttress-cache's own
    // tests/redis_store.rs checks them against REDIS_METRICS.
    let listed: BTreeSet<String> = catalog()
        .iter()
        .filter(|m| !m.name.starts_with("buttress_cache_redis_"))
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(
        emitted,
        listed,
        "emitted but not listed: {:?}; listed but not emitted: {:?}",
        emitted.difference(&listed).collect::<Vec<_>>(),
        listed.difference(&emitted).collect::<Vec<_>>()
    );
}

#[test]
fn a_prometheus_exporter_gets_descriptions_and_series_from_layers_built_before_it() {
    let breaker = CircuitBreaker::builder().name("obs-prom").build().unwrap();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = prometheus.handle();
    let text = metrics::with_local_recorder(&prometheus, || {
        buttress::telemetry::flush();
        handle.render()
    });
    assert!(
        text.contains("# HELP buttress_breaker_calls_total"),
        "{text}"
    );
    assert!(
        text.contains(r#"buttress_breaker_calls_total{name="obs-prom",outcome="success"} 0"#),
        "{text}"
    );
    assert!(!text.contains(r#"name="default""#), "{text}");
    drop(breaker);
}
