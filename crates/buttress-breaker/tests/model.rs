//! Property test: the count window against a plain reference model.
//!
//! The model keeps the outcomes since the last close in a `VecDeque`,
//! trims it to the window size, and trips when the window holds at least
//! `minimum_calls` calls and `failures ≥ max(1, ⌈threshold · calls⌉)`.
//! The breaker must agree on every step: same state, same counts, same
//! rejections.

use std::collections::VecDeque;
use std::time::Duration;

use buttress_breaker::{CircuitBreaker, State};
use buttress_core::classify::Outcome;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    Call(Outcome),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => Just(Op::Call(Outcome::Success)),
        6 => Just(Op::Call(Outcome::Failure)),
        2 => Just(Op::Call(Outcome::Ignored)),
        1 => Just(Op::Reset),
    ]
}

struct Model {
    size: usize,
    minimum: usize,
    ppm: u64,
    window: VecDeque<bool>,
    open: bool,
}

impl Model {
    fn failures(&self) -> usize {
        self.window.iter().filter(|f| **f).count()
    }

    fn record(&mut self, failure: bool) {
        self.window.push_back(failure);
        if self.window.len() > self.size {
            self.window.pop_front();
        }
        let n = self.window.len() as u64;
        let needed = (self.ppm * n).div_ceil(1_000_000).max(1);
        if self.window.len() >= self.minimum && self.failures() as u64 >= needed {
            self.open = true;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn count_window_matches_the_model(
        size in 1u32..40,
        minimum_share in 0.0f64..=1.0,
        threshold_pct in 1u32..=100,
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let minimum = ((f64::from(size) * minimum_share).ceil() as u32).clamp(1, size);
        let threshold = f64::from(threshold_pct) / 100.0;
        let breaker = CircuitBreaker::builder()
            .count_window(size)
            .minimum_calls(minimum)
            .failure_rate_threshold(threshold)
            .open_duration(Duration::from_secs(3600))
            .build()
            .unwrap();
        let mut model = Model {
            size: size as usize,
            minimum: minimum as usize,
            ppm: u64::from(threshold_pct) * 10_000,
            window: VecDeque::new(),
            open: false,
        };
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Reset => {
                    breaker.reset();
                    model.window.clear();
                    model.open = false;
                }
                Op::Call(outcome) => {
                    let permit = breaker.try_acquire();
                    prop_assert_eq!(permit.is_err(), model.open, "step {}: admission", step);
                    if let Ok(permit) = permit {
                        permit.record(outcome);
                        match outcome {
                            Outcome::Success => model.record(false),
                            Outcome::Failure => model.record(true),
                            _ => {}
                        }
                    }
                }
            }
            let s = breaker.snapshot();
            let expected = if model.open { State::Open } else { State::Closed };
            prop_assert_eq!(s.state, expected, "step {}", step);
            if !model.open {
                prop_assert_eq!(s.calls, model.window.len() as u64, "step {}: calls", step);
                prop_assert_eq!(s.failures, model.failures() as u64, "step {}: failures", step);
                let rate = if model.window.is_empty() {
                    0.0
                } else {
                    model.failures() as f64 / model.window.len() as f64
                };
                prop_assert!((s.failure_rate() - rate).abs() < 1e-12);
            }
        }
    }
}

/// The time window against a model that keeps every call with its time.
mod time_window {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum TimeOp {
        Call(bool),
        Ignored,
        Advance(u64),
    }

    fn time_op() -> impl Strategy<Value = TimeOp> {
        prop_oneof![
            8 => Just(TimeOp::Call(false)),
            5 => Just(TimeOp::Call(true)),
            1 => Just(TimeOp::Ignored),
            4 => (1u64..3_000).prop_map(TimeOp::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn time_window_matches_the_model(
            buckets in 1u32..8,
            bucket_ms in 100u64..2_000,
            minimum in 1u32..12,
            threshold_pct in 1u32..=100,
            ops in proptest::collection::vec(time_op(), 0..300),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async move {
                let breaker = CircuitBreaker::builder()
                    .time_window(Duration::from_millis(bucket_ms * u64::from(buckets)), buckets)
                    .minimum_calls(minimum)
                    .failure_rate_threshold(f64::from(threshold_pct) / 100.0)
                    .open_duration(Duration::from_secs(1_000_000))
                    .build()
                    .unwrap();
                let ppm = u64::from(threshold_pct) * 10_000;
                let mut now_ms = 0u64;
                let mut calls: Vec<(u64, bool)> = Vec::new();
                let mut open = false;
                let in_window = |calls: &[(u64, bool)], now_ms: u64| -> (u64, u64) {
                    let current = now_ms / bucket_ms;
                    let oldest = current.saturating_sub(u64::from(buckets) - 1);
                    let live = calls.iter().filter(|(t, _)| t / bucket_ms >= oldest);
                    let (mut n, mut f) = (0, 0);
                    for (_, failed) in live {
                        n += 1;
                        f += u64::from(*failed);
                    }
                    (n, f)
                };
                for (step, op) in ops.into_iter().enumerate() {
                    match op {
                        TimeOp::Advance(ms) => {
                            tokio::time::advance(Duration::from_millis(ms)).await;
                            now_ms += ms;
                        }
                        TimeOp::Ignored => {
                            let permit = breaker.try_acquire();
                            prop_assert_eq!(permit.is_err(), open, "step {}", step);
                            if let Ok(p) = permit {
                                p.record(Outcome::Ignored);
                            }
                        }
                        TimeOp::Call(failed) => {
                            let permit = breaker.try_acquire();
                            prop_assert_eq!(permit.is_err(), open, "step {}: admission", step);
                            if let Ok(p) = permit {
                                p.record(if failed { Outcome::Failure } else { Outcome::Success });
                                calls.push((now_ms, failed));
                                let (n, f) = in_window(&calls, now_ms);
                                let needed = (ppm * n).div_ceil(1_000_000).max(1);
                                if n >= u64::from(minimum) && f >= needed {
                                    open = true;
                                }
                            }
                        }
                    }
                    let s = breaker.snapshot();
                    let expected = if open { State::Open } else { State::Closed };
                    prop_assert_eq!(s.state, expected, "step {}", step);
                    if !open {
                        let (n, f) = in_window(&calls, now_ms);
                        prop_assert_eq!((s.calls, s.failures), (n, f), "step {}", step);
                    }
                }
                Ok(())
            })?;
        }
    }
}
