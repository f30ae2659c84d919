//! The buttress showcase: one in-process backend goes healthy → flaky →
//! dead → healthy while the same load hits it with and without a circuit
//! breaker, and with retries with and without a retry budget, and the run
//! prints what each caller saw.
//!
//! ```text
//! cargo run --release --example showcase
//! ```
//!
//! Modules: [`scenario`] (phases and load), [`backend`] (the service that
//! follows them), [`variants`] (the stacks compared), [`load`] (the
//! clients), [`measure`] (what they saw), [`report`] (what is printed). To
//! compare another stack, add a function to `variants` and call it below.
//! After them, self-contained phases: [`cache`], [`redis`] (two instances
//! sharing a Redis tier; skipped without `redis-server` on `PATH`) and
//! [`limit`].

mod backend;
mod cache;
mod limit;
mod load;
mod measure;
mod redis;
mod report;
mod retry;
mod scenario;
mod variants;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use buttress::BoxError;
use tokio::task::JoinSet;

use crate::measure::{Recorder, Run};
use crate::scenario::{Scenario, Timeline};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let timeline = Timeline::start(Scenario::dead_dependency());
    let runs: Vec<Run> = [
        variants::unprotected(&timeline),
        variants::circuit_breaker(&timeline)?,
        retry::retry(&timeline, true)?,
        retry::retry(&timeline, false)?,
    ]
    .into_iter()
    .map(|variant| Run {
        variant,
        recorder: Arc::new(Recorder::default()),
    })
    .collect();
    println!("{}", report::header(&timeline, &runs));
    println!("{}\n", report::PROGRESS_LEGEND);

    let mut drivers = JoinSet::new();
    for run in &runs {
        drivers.spawn(load::drive(
            run.variant.service.clone(),
            timeline.clone(),
            Arc::clone(&run.recorder),
        ));
    }

    // One line rewritten in place on a terminal; a line a second otherwise.
    let tty = std::io::stdout().is_terminal();
    let every = if tty {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    let mut ticks = tokio::time::interval(every);
    let mut width = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let line = report::progress(&timeline, &runs);
                if tty {
                    print!("\r{line:width$}");
                    width = width.max(line.chars().count());
                    std::io::stdout().flush()?;
                } else {
                    println!("{line}");
                }
            }
            done = drivers.join_next() => match done {
                Some(result) => result?,
                None => break,
            },
        }
    }
    let line = report::progress(&timeline, &runs);
    if tty {
        println!("\r{line:width$}\n");
    } else {
        println!("{line}\n");
    }
    println!("{}", report::summary(&timeline, &runs));
    println!("{}", cache::run().await?);
    println!("{}", redis::run().await?);
    println!();
    limit::traffic_spike().await?;
    Ok(())
}
