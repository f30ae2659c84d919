//! What happens to the backend over time, and the load driven against it.
//!
//! A [`Scenario`] is a list of [`Phase`]s, each with a [`Behavior`] for the
//! backend. A [`Timeline`] is a scenario that has started: the one clock the
//! backends, the load and the report all read, so "which phase was this
//! call in" has one answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How the backend answers while a phase lasts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Behavior {
    /// How long each call takes before it answers.
    pub(crate) latency: Duration,
    /// The share of calls that fail (`0.0..=1.0`), after `latency`.
    pub(crate) error_rate: f64,
}

impl Behavior {
    /// A backend that answers quickly and rarely fails.
    pub(crate) const fn healthy(latency: Duration, error_rate: f64) -> Self {
        Self {
            latency,
            error_rate,
        }
    }

    /// A dead dependency: every call hangs for `hang`, then fails (the
    /// typical connect or read timeout).
    pub(crate) const fn dead(hang: Duration) -> Self {
        Self {
            latency: hang,
            error_rate: 1.0,
        }
    }

    /// Whether every call fails: time spent waiting on such a backend is
    /// time thrown away.
    pub(crate) fn is_down(&self) -> bool {
        self.error_rate >= 1.0
    }

    /// A few words for the report.
    pub(crate) fn describe(&self) -> String {
        let ms = self.latency.as_secs_f64() * 1e3;
        if self.is_down() {
            format!("every call hangs {ms:.0}ms, then fails")
        } else {
            format!("{ms:.0}ms, {:.0}% errors", self.error_rate * 100.0)
        }
    }
}

/// One stretch of the scenario.
#[derive(Clone, Debug)]
pub(crate) struct Phase {
    /// Shown in the progress line and the report.
    pub(crate) name: &'static str,
    /// How long it lasts.
    pub(crate) duration: Duration,
    /// What the backend does meanwhile.
    pub(crate) behavior: Behavior,
}

/// Phases plus the load: `rate` requests per second for each variant, sent
/// by `clients` client tasks at a fixed pace whatever the latency (an open
/// loop, as when users keep arriving while a dependency hangs).
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) phases: Vec<Phase>,
    pub(crate) rate: u32,
    pub(crate) clients: u32,
}

impl Scenario {
    /// Healthy, then flaky (one call in five fails) for three seconds, then a
    /// dependency that hangs and fails for five seconds,
    /// then healthy again.
    pub(crate) fn dead_dependency() -> Self {
        let healthy = Behavior::healthy(Duration::from_millis(2), 0.01);
        Self {
            phases: vec![
                Phase {
                    name: "healthy",
                    duration: Duration::from_secs(3),
                    behavior: healthy,
                },
                // Transient failures: what retries are for.
                Phase {
                    name: "flaky",
                    duration: Duration::from_secs(3),
                    behavior: Behavior::healthy(Duration::from_millis(2), 0.2),
                },
                Phase {
                    name: "failing",
                    duration: Duration::from_secs(5),
                    behavior: Behavior::dead(Duration::from_millis(250)),
                },
                Phase {
                    name: "recovering",
                    duration: Duration::from_secs(5),
                    behavior: healthy,
                },
            ],
            rate: 300,
            clients: 4,
        }
    }

    /// The whole scenario's length.
    pub(crate) fn duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// When phase `index` starts, from the start of the scenario.
    pub(crate) fn phase_start(&self, index: usize) -> Duration {
        self.phases[..index].iter().map(|p| p.duration).sum()
    }

    /// The phase at `elapsed` (the last one once the scenario is over).
    pub(crate) fn phase_at(&self, elapsed: Duration) -> usize {
        let mut end = Duration::ZERO;
        for (i, phase) in self.phases.iter().enumerate() {
            end += phase.duration;
            if elapsed < end {
                return i;
            }
        }
        self.phases.len() - 1
    }
}

/// A scenario under way: its phases and the instant it started.
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    scenario: Arc<Scenario>,
    start: Instant,
}

impl Timeline {
    /// Starts `scenario` now.
    pub(crate) fn start(scenario: Scenario) -> Self {
        Self {
            scenario: Arc::new(scenario),
            start: Instant::now(),
        }
    }

    pub(crate) fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub(crate) fn start_instant(&self) -> Instant {
        self.start
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// `at` as time since the start.
    pub(crate) fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    /// The index of the current phase.
    pub(crate) fn phase_now(&self) -> usize {
        self.scenario.phase_at(self.elapsed())
    }
}
