//! The adaptive-limit simulation: each algorithm in front of a backend with
//! capacity C = 50 calls at 50 ms, offered 2× C, with C halving after 60
//! one-second windows. Prints the table in `docs/benchmarks.md` and each
//! limit's trajectory.
//!
//! ```text
//! cargo run --example limit-simulation
//! ```
//!
//! It runs under tokio's paused clock, so 2 × 60 simulated seconds per
//! algorithm take a second or two of real time, and every run prints the
//! same figures.

#[path = "../../crates/buttress-limit/tests/sim/mod.rs"]
mod sim;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let sc = sim::Scenario::default();
        println!(
            "backend: capacity C = {} calls at {:?} no-load; offered 2 × C ({} calls/s); C halves after {} windows of {:?}\n",
            sc.capacity,
            sc.base,
            2.0 * f64::from(sc.capacity) / sc.base.as_secs_f64(),
            sc.windows_per_phase,
            sc.window,
        );
        let mut reports = Vec::new();
        for (name, limit) in sim::contenders(&sc) {
            reports.push(sim::run(&name, limit, sc).await);
        }
        println!("{}", sim::table(&reports));
        println!("limit after each window:\n{}", sim::trajectories(&reports));
    });
}
