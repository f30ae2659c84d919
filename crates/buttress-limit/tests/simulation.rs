//! Every algorithm, with every setting at its default (the limiter's
//! included), in front of a simulated backend through four scenarios (see
//! `scenarios/mod.rs` for the model and `docs/limit.md` for the tables):
//!
//! - `halves`: capacity 40 calls at 100 ms, offered 2×; capacity halves for
//!   10 s, then returns;
//! - `slower`: capacity 20 calls at 50 ms, offered 2×; the no-load latency
//!   doubles for 10 s with the capacity unchanged, then returns;
//! - `burst`: capacity 50 calls at 50 ms, offered 1.5×, then 5× for 2 s;
//! - `rising`: capacity 30 calls at 60 ms, offered 2×; the no-load latency
//!   rises to 3× over 20 s.
//!
//! The recommended default, [`Knee`], is held to issue #12's targets in
//! every phase of every scenario: goodput ≥ 95 % of what the backend can
//! answer; every 1-s mean limit within ±20 % of the capacity from 3 s
//! after each change on; p99 of admitted calls ≤ 1.5× the no-load latency
//! once capacity halved (after the 3 s allowed to converge); and, while
//! latency rises, no 1-s mean limit below 80 % of the capacity. Run with
//! `--nocapture` to print the tables.

mod scenarios;

use buttress_limit::AdaptiveLimit;
use buttress_limit::algorithm::Knee;
use scenarios::{Report, Scenario, burst, contenders, halves, rising, slower};

async fn run_all(sc: &Scenario) -> Vec<Report> {
    let mut reports = Vec::new();
    for (name, limit) in contenders(sc) {
        reports.push(scenarios::run(name, limit, sc).await);
    }
    println!("{}", scenarios::table(&reports));
    println!("{}", scenarios::trajectories(&reports));
    for r in &reports {
        println!("{} {}: misses {:?}", r.scenario, r.limit, misses(r));
    }
    reports
}

/// The targets a report misses, phase by phase (empty: every one met).
fn misses(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in r.phases.iter().enumerate() {
        if p.goodput < 0.95 {
            out.push(format!("phase {i}: goodput {:.1} %", p.goodput * 100.0));
        }
        if p.converged.is_none_or(|s| s > 3) {
            let s = p
                .converged
                .map_or("never".to_string(), |s| format!("{s} s"));
            out.push(format!("phase {i}: within ±20 % after {s}"));
        }
        if r.scenario == "halves" && i == 1 && p.p99_settled > 1.5 {
            out.push(format!("phase {i}: p99 {:.2}× no-load", p.p99_settled));
        }
        if r.scenario == "rising" && p.min_settled < 0.8 {
            out.push(format!("phase {i}: limit down to {:.2}× C", p.min_settled));
        }
    }
    out
}

/// The recommended default meets every target.
fn assert_targets(r: &Report) {
    assert_eq!(r.limit, "knee");
    let missed = misses(r);
    assert!(
        missed.is_empty(),
        "{} {}: {missed:?}: {:?}",
        r.scenario,
        r.limit,
        r.phases.iter().map(|p| &p.limits).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn capacity_halves_and_returns() {
    let reports = run_all(&halves()).await;
    assert_targets(&reports[0]);
}

#[tokio::test(start_paused = true)]
async fn no_load_latency_doubles_and_returns() {
    let reports = run_all(&slower()).await;
    assert_targets(&reports[0]);
}

#[tokio::test(start_paused = true)]
async fn a_short_burst_of_5x() {
    let reports = run_all(&burst()).await;
    assert_targets(&reports[0]);
}

#[tokio::test(start_paused = true)]
async fn rising_latency_does_not_collapse_the_limit() {
    let reports = run_all(&rising()).await;
    assert_targets(&reports[0]);
}

/// The same scenarios with each call's latency ±10 % at random (a window's
/// mean then wanders by a per cent or two): Knee keeps every target except
/// that its goodput may dip to 90 % in a phase (the capacity's return in
/// `halves` is the one that does: 94.9 %).
#[tokio::test(start_paused = true)]
async fn with_10_percent_latency_jitter() {
    for mut sc in scenarios::all() {
        sc.jitter = 0.1;
        let limit = AdaptiveLimit::builder(Knee::builder().build().unwrap())
            .build()
            .unwrap();
        let r = scenarios::run("knee", limit, &sc).await;
        let missed: Vec<_> = misses(&r)
            .into_iter()
            .filter(|m| !m.contains("goodput"))
            .collect();
        assert!(missed.is_empty(), "{}: {missed:?}", sc.name);
        for (i, p) in r.phases.iter().enumerate() {
            assert!(
                p.goodput >= 0.9,
                "{} phase {i}: goodput {:.3}",
                sc.name,
                p.goodput
            );
        }
    }
}
