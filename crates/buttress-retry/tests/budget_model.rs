//! Property test: the retry budget never grants more than Finagle's rule
//! allows, for any sequence of deposits, withdrawals and waits.
//!
//! Every withdrawal is remembered for at least the TTL and every deposit
//! for at most the TTL, so at each granted withdrawal at time `s`, all the
//! withdrawals granted in `(s − TTL, s]` were spent against at most the
//! reserve plus the deposits made in `(s − TTL, s]`:
//! `granted · 10⁶ ≤ min_per_second · TTL · 10⁶ + ppm · deposits`, exactly,
//! in integers.

use std::time::Duration;

use buttress_retry::RetryBudget;
use proptest::prelude::*;
use tokio::time::Instant;

#[derive(Clone, Debug)]
enum Op {
    Deposit(u32),
    Withdraw(u32),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u32..40).prop_map(Op::Deposit),
        4 => (1u32..10).prop_map(Op::Withdraw),
        2 => (1u64..4_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    #[test]
    fn never_grants_more_than_the_rule(
        percent in prop::sample::select(vec![0.0, 5.0, 12.5, 20.0, 30.0, 33.3, 150.0]),
        min_per_second in 0u32..4,
        ttl_secs in 1u64..=10,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        let ttl = Duration::from_secs(ttl_secs);
        let budget = RetryBudget::builder()
            .percent(percent)
            .min_per_second(min_per_second)
            .ttl(ttl)
            .build()
            .unwrap();
        let ppm = (percent * 10_000.0).round() as u128;
        let reserve = u128::from(min_per_second) * u128::from(ttl_secs) * 1_000_000;
        let mut deposits: Vec<Instant> = Vec::new();
        let mut granted: Vec<Instant> = Vec::new();
        for op in ops {
            match op {
                Op::Deposit(n) => {
                    for _ in 0..n {
                        budget.deposit();
                        deposits.push(Instant::now());
                    }
                }
                Op::Withdraw(n) => {
                    for _ in 0..n {
                        if !budget.withdraw() {
                            continue;
                        }
                        let s = Instant::now();
                        granted.push(s);
                        let recent = |t: &&Instant| s.duration_since(**t) < ttl;
                        let w = granted.iter().filter(recent).count() as u128;
                        let d = deposits.iter().filter(recent).count() as u128;
                        prop_assert!(
                            w * 1_000_000 <= reserve + ppm * d,
                            "{w} withdrawals against reserve {reserve} + {ppm} × {d} deposits"
                        );
                    }
                }
                Op::Advance(ms) => rt.block_on(tokio::time::advance(Duration::from_millis(ms))),
            }
        }
    }
}

/// And it does grant: with a reserve and nothing spent for more than
/// 1.1 × the TTL, a withdrawal succeeds; with deposits only, exactly the
/// share of them.
#[test]
fn grants_what_the_rule_allows() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _guard = rt.enter();
    let b = RetryBudget::builder()
        .percent(25.0)
        .min_per_second(1)
        .ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut n = 0;
    while b.withdraw() {
        n += 1;
    }
    assert_eq!(n, 2, "the reserve: 1/s × 2 s");
    for _ in 0..8 {
        b.deposit();
    }
    assert!(b.withdraw() && b.withdraw() && !b.withdraw(), "25 % of 8");
    rt.block_on(tokio::time::advance(Duration::from_millis(2_200)));
    assert_eq!(b.available(), 2, "the reserve again after 1.1 × TTL");
}
