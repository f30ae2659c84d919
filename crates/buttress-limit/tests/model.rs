//! Model-based test: any interleaving of acquisitions, completions with any
//! outcome and cancellations keeps the in-flight count equal to the permits
//! alive, never above the limit, and back to zero at the end.

use std::time::Duration;

use buttress_core::classify::Outcome;
use buttress_limit::AdaptiveLimit;
use buttress_limit::algorithm::Aimd;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Complete(usize, u8),
    Drop(usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        2 => (any::<usize>(), 0u8..3).prop_map(|(i, o)| Op::Complete(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => (1u16..2000).prop_map(Op::Advance),
    ]
}

proptest! {
    #[test]
    fn in_flight_matches_the_permits_alive(ops in proptest::collection::vec(op(), 1..300)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let limit = AdaptiveLimit::builder(
                Aimd::builder().min_limit(2).initial_limit(5).max_limit(10).build().unwrap(),
            )
            .window(Duration::from_millis(100))
            .window_samples(1)
            .build()
            .unwrap();
            let mut permits = Vec::new();
            for op in ops {
                match op {
                    Op::Acquire => {
                        let at_limit = limit.in_flight() >= limit.limit();
                        match limit.try_acquire() {
                            Ok(p) => {
                                prop_assert!(!at_limit);
                                permits.push(p);
                            }
                            Err(_) => prop_assert!(at_limit),
                        }
                    }
                    Op::Complete(i, o) if !permits.is_empty() => {
                        let p = permits.swap_remove(i % permits.len());
                        p.record([Outcome::Success, Outcome::Failure, Outcome::Ignored][o as usize]);
                    }
                    Op::Drop(i) if !permits.is_empty() => {
                        drop(permits.swap_remove(i % permits.len()));
                    }
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
                    _ => {}
                }
                prop_assert_eq!(limit.in_flight() as usize, permits.len());
                prop_assert!((2..=10).contains(&limit.limit()));
            }
            permits.clear();
            prop_assert_eq!(limit.in_flight(), 0);
            Ok(())
        })?;
    }
}

/// Any sequence of samples, however odd (zero RTTs, drops, huge in-flight
/// counts, time going nowhere), keeps every algorithm within its bounds
/// and never panics.
mod algorithms {
    use std::time::Duration;

    use buttress_limit::algorithm::{Aimd, EnvoyGradient, Gradient2, Knee, Limit, Sample, Vegas};
    use proptest::prelude::*;

    fn sample() -> impl Strategy<Value = Sample> {
        (
            0u64..10_000,
            prop_oneof![Just(0u64), 1u64..10_000_000_000],
            any::<u32>(),
            any::<bool>(),
            1u32..10_000,
        )
            .prop_map(|(at, rtt, in_flight, dropped, count)| {
                Sample::new(
                    Duration::from_secs(at),
                    Duration::from_nanos(rtt),
                    in_flight,
                    dropped,
                )
                .with_count(count)
            })
    }

    proptest! {
        #[test]
        fn limits_stay_within_bounds(samples in proptest::collection::vec(sample(), 1..200)) {
            let mut algorithms: Vec<(Box<dyn Limit>, u32, u32)> = vec![
                (Box::new(Aimd::builder().build().unwrap()), 20, 200),
                (Box::new(Knee::builder().build().unwrap()), 1, 1000),
                (Box::new(Vegas::builder().seed(1).build().unwrap()), 1, 1000),
                (Box::new(Gradient2::builder().build().unwrap()), 20, 200),
                (Box::new(EnvoyGradient::builder().seed(1).build().unwrap()), 3, 1000),
            ];
            for s in &samples {
                for (a, lo, hi) in &mut algorithms {
                    let l = a.update(s);
                    prop_assert_eq!(l, a.limit());
                    prop_assert!((*lo..=*hi).contains(&l), "{} gave {}", a.name(), l);
                }
            }
        }
    }
}
