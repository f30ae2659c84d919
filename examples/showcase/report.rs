//! Everything printed: the header, the live progress line and the final
//! tables. Every figure comes from the run's own measurements.

use std::fmt::Write as _;
use std::time::Duration;

use crate::measure::{Run, Sample, Summary};
use crate::scenario::Timeline;

/// Width of a variant's column in the tables.
const COL: usize = 18;
/// Width of the row labels in the tables.
const LABEL: usize = 34;

/// What is about to run.
pub(crate) fn header(timeline: &Timeline, runs: &[Run]) -> String {
    let scenario = timeline.scenario();
    let phases: Vec<String> = scenario
        .phases
        .iter()
        .map(|p| {
            format!(
                "{} {} ({})",
                p.name,
                secs(p.duration),
                p.behavior.describe()
            )
        })
        .collect();
    let mut out = String::from("buttress showcase: a backend dies and comes back\n\n");
    let _ = writeln!(out, "  phases    {}", phases.join(" -> "));
    let _ = writeln!(
        out,
        "  load      {} req/s per variant from {} clients at a fixed pace (open loop), variants side by side",
        scenario.rate, scenario.clients
    );
    for (i, run) in runs.iter().enumerate() {
        let label = if i == 0 { "variants" } else { "" };
        let _ = writeln!(
            out,
            "  {label:<9} {}: {}",
            run.variant.name, run.variant.description
        );
    }
    out
}

/// What the progress line's figures are.
pub(crate) const PROGRESS_LEGEND: &str = "phase, elapsed | per variant: requests / failed (of them fast rejections) / calls at the backend";

/// The one-line progress report (see [`PROGRESS_LEGEND`]).
pub(crate) fn progress(timeline: &Timeline, runs: &[Run]) -> String {
    let scenario = timeline.scenario();
    let elapsed = timeline.elapsed().min(scenario.duration());
    let phase = &scenario.phases[scenario.phase_at(elapsed)];
    let mut line = format!("{:<10} {:>5.1}s", phase.name, elapsed.as_secs_f64());
    for run in runs {
        let live = run.recorder.live();
        let _ = write!(
            line,
            " | {} {} / {} ({}) / {}",
            run.variant.name,
            live.started,
            live.backend_errors + live.rejected,
            live.rejected,
            run.variant.backend.total(),
        );
        if let Some((breaker, _)) = &run.variant.breaker {
            let _ = write!(line, " {}", breaker.state());
        }
    }
    line
}

/// The final tables.
pub(crate) fn summary(timeline: &Timeline, runs: &[Run]) -> String {
    let scenario = timeline.scenario();
    let samples: Vec<Vec<Sample>> = runs.iter().map(|r| r.recorder.samples()).collect();
    let down = |s: &&Sample| scenario.phases[s.phase].behavior.is_down();
    let totals: Vec<Summary> = samples.iter().map(Summary::of).collect();
    let dead: Vec<Summary> = samples
        .iter()
        .map(|s| Summary::of(s.iter().filter(down)))
        .collect();
    let dead_calls: Vec<u64> = runs
        .iter()
        .map(|r| {
            (0..scenario.phases.len())
                .filter(|&i| scenario.phases[i].behavior.is_down())
                .map(|i| r.variant.backend.in_phase(i))
                .sum()
        })
        .collect();

    let mut out = String::new();
    let _ = write!(out, "{:LABEL$}", "");
    for run in runs {
        let _ = write!(out, "{:>COL$}", run.variant.name);
    }
    out.push('\n');
    let mut row = |label: &str, cells: Vec<String>| {
        let _ = write!(out, "{label:LABEL$}");
        for cell in cells {
            let _ = write!(out, "{cell:>COL$}");
        }
        out.push('\n');
    };
    row(
        "requests",
        totals.iter().map(|s| s.requests.to_string()).collect(),
    );
    row(
        "  succeeded",
        totals.iter().map(|s| s.ok.to_string()).collect(),
    );
    row(
        "  failed: backend error",
        totals
            .iter()
            .map(|s| s.backend_errors.to_string())
            .collect(),
    );
    row(
        "  failed: fast rejection",
        totals.iter().map(|s| s.rejected.to_string()).collect(),
    );
    row(
        "calls that reached the backend",
        runs.iter()
            .map(|r| r.variant.backend.total().to_string())
            .collect(),
    );
    row(
        "  of them while it was dead",
        dead_calls.iter().map(ToString::to_string).collect(),
    );
    row(
        "time callers waited on dead backend",
        dead.iter().map(|s| secs(s.backend_wait)).collect(),
    );
    row("latency p50", totals.iter().map(|s| ms(s.p50)).collect());
    row("latency p99", totals.iter().map(|s| ms(s.p99)).collect());
    row(
        "peak requests in flight",
        runs.iter()
            .map(|r| r.recorder.peak_in_flight().to_string())
            .collect(),
    );

    let _ = writeln!(
        out,
        "\n{:<30}{:>8}{:>11}{:>13}{:>10}{:>12}{:>10}{:>10}",
        "by phase", "requests", "succeeded", "backend err", "rejected", "at backend", "p50", "p99"
    );
    for (i, phase) in scenario.phases.iter().enumerate() {
        for (j, run) in runs.iter().enumerate() {
            let s = Summary::of(samples[j].iter().filter(|s| s.phase == i));
            let name = if j == 0 { phase.name } else { "" };
            let _ = writeln!(
                out,
                "  {name:<11}{:<17}{:>8}{:>11}{:>13}{:>10}{:>12}{:>10}{:>10}",
                run.variant.name,
                s.requests,
                s.ok,
                s.backend_errors,
                s.rejected,
                run.variant.backend.in_phase(i),
                ms(s.p50),
                ms(s.p99),
            );
        }
    }

    for run in runs {
        let Some((breaker, transitions)) = &run.variant.breaker else {
            continue;
        };
        let _ = writeln!(
            out,
            "\n{} transitions (on_state_change), from the start:",
            run.variant.name
        );
        for t in transitions.all() {
            let at = timeline.offset(t.at());
            let phase = scenario.phase_at(at);
            let into = at.saturating_sub(scenario.phase_start(phase));
            let mut why = format!("{:?}", t.reason());
            if let Some(open_for) = t.open_for() {
                let _ = write!(why, ", open for {}ms", open_for.as_millis());
            }
            let _ = writeln!(
                out,
                "  +{:.2}s  {:>9} -> {:<9}  {why:<32} {} +{:.2}s",
                at.as_secs_f64(),
                t.from().as_str(),
                t.to().as_str(),
                scenario.phases[phase].name,
                into.as_secs_f64(),
            );
        }
        let snapshot = breaker.snapshot();
        let _ = writeln!(
            out,
            "  now {}, {} calls rejected in all (the breaker's own count)",
            snapshot.state, snapshot.rejected
        );
    }

    out.push('\n');
    for i in 1..runs.len() {
        let _ = writeln!(
            out,
            "While the backend was dead, {name} sent it {} calls ({base}: {}) and kept its \
             callers waiting on it {} in all ({base}: {}).",
            dead_calls[i],
            dead_calls[0],
            secs(dead[i].backend_wait),
            secs(dead[0].backend_wait),
            name = runs[i].variant.name,
            base = runs[0].variant.name,
        );
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1e3)
    } else {
        format!("{ms:.1}ms")
    }
}
