//! The limiter's counts reach the recorder under the catalog's names.

use buttress_core::telemetry::{catalog, flush};
use buttress_ratelimit::{METRICS, Quota, RateLimiter};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// The counter `metric` of the limiter `name` with `class`, flushed now.
fn counter(metric: &str, name: &str, class: &str) -> Option<u64> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, flush);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(k, _, _, v)| {
            let k = k.key();
            let is = |l: &str, value: &str| k.labels().any(|x| x.key() == l && x.value() == value);
            match v {
                DebugValue::Counter(n)
                    if k.name() == metric && is("name", name) && is("class", class) =>
                {
                    Some(n)
                }
                _ => None,
            }
        })
}

#[tokio::test(start_paused = true)]
async fn decisions_are_published_by_class() {
    let gold = Quota::per_second(2).unwrap().class("gold");
    let limiter = RateLimiter::<u8>::builder(gold)
        .name("metered")
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = limiter.check_local(&1);
    }
    assert_eq!(
        counter("buttress_ratelimit_allowed_total", "metered", "gold"),
        Some(2)
    );
    assert_eq!(
        counter("buttress_ratelimit_limited_total", "metered", "gold"),
        Some(3)
    );
    let names: Vec<_> = catalog().iter().map(|m| m.name).collect();
    for m in METRICS {
        assert!(m.name.starts_with("buttress_ratelimit_"), "{}", m.name);
        assert!(
            names.contains(&m.name),
            "{} is in the shared catalog",
            m.name
        );
    }
}
