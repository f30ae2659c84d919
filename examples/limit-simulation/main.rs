//! The adaptive-limit simulation: every algorithm at its defaults (and the
//! one-setting variants `docs/limit.md` discusses) in front of a simulated
//! backend through the four scenarios of the limit crate's `simulation`
//! test (capacity halves and returns; the no-load latency doubles; a short
//! 5× burst; a rising latency). Prints, per scenario, the table in
//! `docs/limit.md` and each limit's trajectory.
//!
//! ```text
//! cargo run -p buttress-examples --example limit-simulation
//! ```
//!
//! It runs under tokio's paused clock, so the simulated minutes take a few
//! seconds of real time, and every run prints the same figures. The model
//! and the scenarios are the test's own (`crates/buttress-limit/tests/
//! scenarios/`), so the example shows exactly what the test asserts.

#[path = "../../crates/buttress-limit/tests/scenarios/mod.rs"]
mod scenarios;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        for sc in scenarios::all() {
            println!("## scenario `{}`\n", sc.name);
            let mut reports = Vec::new();
            for (name, limit) in scenarios::contenders(&sc) {
                reports.push(scenarios::run(name, limit, &sc).await);
            }
            println!("{}", scenarios::table(&reports));
            println!("limit, 1-s means:\n{}", scenarios::trajectories(&reports));
        }
    });
}
