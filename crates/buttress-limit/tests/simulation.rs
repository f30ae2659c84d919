//! The simulation: each algorithm in front of a backend with capacity C,
//! offered 2× C, with C halving midway (see `sim/mod.rs` for the model and
//! `docs/benchmarks.md` for the table).
//!
//! The targets, per algorithm: the limit converges within ±20 % of
//! C within 30 sampling windows; p99 latency of admitted calls ≤ 2× the
//! no-load latency; after C halves the limit follows within 30 windows;
//! goodput ≥ 90 % of C. Run with `--nocapture` to see the table.
//!
//! With their reference defaults, only Vegas meets every target. The others
//! miss some for reasons that are properties of the algorithms, not of this
//! crate, and the assertions below pin what each does instead:
//!
//! - AIMD sees latency only through its 5 s timeout: against a backend that
//!   slows down rather than fails, it climbs by one per window to its
//!   maximum. With a timeout of 1.1× the no-load latency it meets every
//!   target.
//! - Gradient2 tolerates 1.5× the long-term RTT and adds a queue of 4, so it
//!   settles near 1.3× C (1.9× after the halving); with a tolerance of 1.0
//!   it meets every target.
//! - Envoy's controller keeps a 25 % latency buffer plus √L of head-room,
//!   so it settles near 1.25·C + √(1.25·C) (about 1.3× C here); with a
//!   buffer of 0 it meets every target.

mod sim;

use sim::{Report, Scenario};

fn find<'a>(reports: &'a [Report], name: &str) -> &'a Report {
    reports
        .iter()
        .find(|r| r.name.starts_with(name))
        .unwrap_or_else(|| panic!("no report {name}"))
}

#[tokio::test(start_paused = true)]
async fn every_algorithm_against_a_2x_overload() {
    let sc = Scenario::default();
    let mut reports: Vec<Report> = Vec::new();
    for (name, limit) in sim::contenders(&sc) {
        reports.push(sim::run(&name, limit, sc).await);
    }
    println!("{}", sim::table(&reports));
    println!("{}", sim::trajectories(&reports));

    // Every target, met.
    for name in [
        "vegas (defaults)",
        "aimd (timeout 1.1",
        "gradient2 (tolerance 1.0)",
        "envoy (buffer 0)",
    ] {
        let r = find(&reports, name);
        assert_eq!(
            r.converged_within(30),
            [true, true],
            "{name}: converges and follows within 30 windows: {:?}",
            r.settled_after
        );
        assert!(
            r.p99_ratio() <= 2.0,
            "{name}: p99 {}× no-load",
            r.p99_ratio()
        );
        assert!(r.min_goodput() >= 0.9, "{name}: goodput {:?}", r.goodput);
    }

    // Reference defaults that miss a target: what they do instead.
    let aimd = find(&reports, "aimd (defaults)");
    assert!(
        aimd.limits.windows(2).all(|w| w[1] >= w[0]),
        "AIMD with a 5 s timeout never backs off from a slow backend"
    );
    assert!(aimd.min_goodput() >= 0.9);
    for name in ["gradient2 (defaults)", "envoy (defaults)"] {
        let r = find(&reports, name);
        for phase in 0..2 {
            let c = f64::from(r.capacity(phase));
            // Settles above the band, by design, within 2× C.
            assert!(
                r.mean_limit[phase] > 1.2 * c && r.mean_limit[phase] < 2.0 * c,
                "{name} phase {phase}: mean limit {}",
                r.mean_limit[phase]
            );
        }
        assert!(
            r.p99_ratio() <= 2.0,
            "{name}: p99 {}× no-load",
            r.p99_ratio()
        );
        assert!(r.min_goodput() >= 0.9, "{name}: goodput {:?}", r.goodput);
    }

    // The comparisons: a static limit set 2× too high doubles latency for
    // everyone, and quadruples it once capacity halves; no limit at all lets
    // the queue grow until nothing is answered in time.
    let fixed = find(&reports, "fixed");
    assert!((fixed.p99[0].as_secs_f64() / sc.base.as_secs_f64() - 2.0).abs() < 0.05);
    assert!(fixed.p99_ratio() > 3.9);
    assert!(find(&reports, "vegas (defaults)").p99_ratio() < fixed.p99_ratio() / 3.0);
    let none = find(&reports, "none");
    assert!(
        none.min_goodput() < 0.1,
        "goodput without a limit {:?}",
        none.goodput
    );
}
