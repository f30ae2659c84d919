//! Both windows under concurrent load at a failure rate just under and
//! just over the threshold, and the time window across decades of clock.

use std::time::Duration;

use buttress_breaker::{CircuitBreaker, CircuitBreakerBuilder, State};
use buttress_core::classify::Outcome;

const THREADS: u64 = 4;
const CALLS: u64 = 30_000;

/// Four threads record 30,000 calls each through `breaker`; a call fails
/// when its index is a multiple of 3 but not of 300, a true failure rate
/// of 0.33 in every stretch of the run. Returns whether the breaker
/// tripped.
fn tripped(breaker: &CircuitBreaker) -> bool {
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for i in 0..CALLS {
                    let outcome = if i % 3 == 0 && i % 300 != 0 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    match breaker.try_acquire() {
                        Ok(permit) => permit.record(outcome),
                        Err(_) => return,
                    }
                }
            });
        }
    });
    breaker.state() != State::Closed
}

fn count_window() -> CircuitBreakerBuilder {
    CircuitBreaker::builder()
        .count_window(3000)
        .minimum_calls(2000)
}

fn time_window() -> CircuitBreakerBuilder {
    CircuitBreaker::builder()
        .time_window(Duration::from_secs(3600), 10)
        .minimum_calls(2000)
}

fn never_trips_just_under_the_threshold(window: fn() -> CircuitBreakerBuilder, name: &str) {
    for round in 0..100 {
        let breaker = window().failure_rate_threshold(0.34).build().unwrap();
        assert!(
            !tripped(&breaker),
            "{name}: a 0.33 failure rate tripped a 0.34 threshold in round {round}: {:?}",
            breaker.snapshot()
        );
    }
}

fn always_trips_just_over_the_threshold(window: fn() -> CircuitBreakerBuilder, name: &str) {
    for round in 0..10 {
        let breaker = window().failure_rate_threshold(0.32).build().unwrap();
        assert!(
            tripped(&breaker),
            "{name}: a 0.33 failure rate did not trip a 0.32 threshold in round {round}: {:?}",
            breaker.snapshot()
        );
    }
}

#[test]
fn count_window_never_trips_just_under_the_threshold() {
    never_trips_just_under_the_threshold(count_window, "count window");
}

#[test]
fn count_window_trips_just_over_the_threshold() {
    always_trips_just_over_the_threshold(count_window, "count window");
}

#[test]
fn time_window_never_trips_just_under_the_threshold() {
    // Writers count a call before its failure and readers take a stripe's
    // failures before its calls, so a reader preempted between the two
    // never sees failures without their calls (which would trip the
    // breaker just under the threshold).
    never_trips_just_under_the_threshold(time_window, "time window");
}

#[test]
fn time_window_trips_just_over_the_threshold() {
    always_trips_just_over_the_threshold(time_window, "time window");
}

#[tokio::test(start_paused = true)]
async fn millisecond_slices_keep_working_for_decades() {
    // Slice rounds are kept in 40 bits and compared modulo 2^40: with 1 ms
    // slices the window keeps counting past 34.8 years of the breaker's
    // clock, and the breaker keeps tripping.
    let build = |window: Duration, slices: u32| {
        CircuitBreaker::builder()
            .time_window(window, slices)
            .minimum_calls(2)
            .failure_rate_threshold(1.0)
            .build()
            .unwrap()
    };
    let fail = |b: &CircuitBreaker| b.try_acquire().unwrap().record(Outcome::Failure);
    // The case: 1 s in 1,000 slices of 1 ms.
    let thousand = build(Duration::from_secs(1), 1000);
    // One slice of 1 ms: every slice is a new round, so the 40-bit round
    // numbers wrap at slice 2^40, which starts 2^40 − 1 ms in.
    let single = build(Duration::from_millis(1), 1);

    tokio::time::advance(Duration::from_millis((1 << 40) - 2)).await;
    fail(&single);
    assert_eq!(single.snapshot().failures, 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(single.snapshot().calls, 0, "the last round left the window");
    fail(&single);
    assert_eq!(single.state(), State::Closed);
    fail(&single);
    assert_eq!(
        single.state(),
        State::Open,
        "the first round after the wrap"
    );

    tokio::time::advance(Duration::from_secs(6 * 365 * 86_400)).await;
    single.reset();
    fail(&single);
    fail(&single);
    assert_eq!(single.state(), State::Open, "40 years in");
    fail(&thousand);
    fail(&thousand);
    assert_eq!(thousand.state(), State::Open, "40 years in");
}

#[tokio::test(start_paused = true)]
async fn a_slot_untouched_for_decades_is_reclaimed() {
    // One 1 ms slice: a round per millisecond. A slot last written 2^40 −
    // 2^30 rounds ago (34.8 years) has a 40-bit round number just ahead of
    // the current one; it is stale, not later, and must take new calls.
    let breaker = CircuitBreaker::builder()
        .time_window(Duration::from_millis(1), 1)
        .minimum_calls(1)
        .failure_rate_threshold(1.0)
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Success);
    tokio::time::advance(Duration::from_millis((1 << 40) - (1 << 30))).await;
    assert_eq!(breaker.snapshot().calls, 0);
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), State::Open, "the failure was counted");
}
