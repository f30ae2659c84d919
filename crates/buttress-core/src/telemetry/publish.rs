//! Publication: every live layer's counts, written to the `metrics`
//! recorder in force at the time of publication.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};

use super::Name;
use super::catalog::{MetricInfo, MetricKind, catalog};

/// Something that has counts to publish: a layer's shared state.
///
/// Layers keep their counts in their own memory (per-thread stripes on the
/// hot path) and publish them as absolute totals and current values when
/// asked, so a call never touches the recorder, and a layer built before
/// the application installs its recorder publishes into it all the same.
pub trait Publish: Send + Sync {
    /// Writes every series of this instance to `out`, including the ones
    /// at zero (so that each series exists from the first publication).
    fn publish(&self, out: &mut Emit<'_>);
}

/// Where a [`Publish`] writes: the recorder in force, with the instance's
/// `name` label added to every series.
pub struct Emit<'a> {
    recorder: &'a dyn Recorder,
    name: Name,
}

pub(crate) static METADATA: Metadata<'static> =
    Metadata::new("buttress", Level::INFO, Some(module_path!()));

impl Emit<'_> {
    /// The instance's name.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }

    fn key(&self, metric: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let mut all = Vec::with_capacity(labels.len() + 1);
        all.push(Label::from_static_parts("name", self.name.as_str()));
        for (k, v) in labels {
            all.push(Label::new(*k, SharedString::from((*v).to_owned())));
        }
        Key::from_parts(metric, all)
    }

    /// Sets the counter `metric` to its running total `value`.
    pub fn counter(&mut self, metric: &'static str, value: u64) {
        self.counter_with(metric, &[], value);
    }

    /// [`counter`](Self::counter) with labels besides `name`.
    pub fn counter_with(
        &mut self,
        metric: &'static str,
        labels: &[(&'static str, &str)],
        value: u64,
    ) {
        let key = self.key(metric, labels);
        self.recorder
            .register_counter(&key, &METADATA)
            .absolute(value);
    }

    /// Sets the gauge `metric` to `value`.
    pub fn gauge(&mut self, metric: &'static str, value: f64) {
        self.gauge_with(metric, &[], value);
    }

    /// [`gauge`](Self::gauge) with labels besides `name`.
    pub fn gauge_with(
        &mut self,
        metric: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        let key = self.key(metric, labels);
        self.recorder.register_gauge(&key, &METADATA).set(value);
    }
}

impl std::fmt::Debug for Emit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emit")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A registration's link to its source.
pub(crate) struct Slot {
    source: OnceLock<Weak<dyn Publish>>,
}

impl Slot {
    pub(crate) fn new() -> Self {
        Self {
            source: OnceLock::new(),
        }
    }

    pub(crate) fn attach(&self, source: Weak<dyn Publish>) {
        let _ = self.source.set(source);
    }
}

pub(crate) struct Entry {
    pub(crate) kind: &'static str,
    pub(crate) name: Name,
    pub(crate) slot: Weak<Slot>,
}

pub(crate) fn registry() -> MutexGuard<'static, Vec<Entry>> {
    static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Publishes every live layer's counts to the recorder in force on this
/// thread (a local recorder if one is set, else the global one), and
/// describes every buttress metric to it (unit and help text).
///
/// A background thread does this every
/// [publish interval](set_publish_interval) (1 s by default) for the global
/// recorder, so counts reach it without your help. Call `flush` yourself
/// where exact figures matter: in a `/metrics` handler just before
/// rendering, at shutdown, in a test.
pub fn flush() {
    metrics::with_recorder(publish_to);
}

fn publish_to(recorder: &dyn Recorder) {
    for info in catalog() {
        describe(recorder, info);
    }
    // Collect first, publish after: a source may be dropped (and its
    // registration removed) while it publishes, which takes the lock.
    let live: Vec<_> = {
        let mut entries = registry();
        entries.retain(|e| e.slot.strong_count() > 0);
        entries
            .iter()
            .filter_map(|e| {
                let slot = e.slot.upgrade()?;
                let source = slot.source.get()?.upgrade()?;
                Some((e.name, source))
            })
            .collect()
    };
    for (name, source) in live {
        source.publish(&mut Emit { recorder, name });
    }
}

fn describe(recorder: &dyn Recorder, info: &MetricInfo) {
    let key = KeyName::from_const_str(info.name);
    let help = SharedString::const_str(info.help);
    let unit = Some(info.unit);
    match info.kind {
        MetricKind::Counter => recorder.describe_counter(key, unit, help),
        MetricKind::Gauge => recorder.describe_gauge(key, unit, help),
        MetricKind::Histogram => recorder.describe_histogram(key, unit, help),
    }
}

/// Nanoseconds between background publications; 0: none.
static INTERVAL_NANOS: AtomicU64 = AtomicU64::new(1_000_000_000);

/// How often the background thread publishes to the global recorder.
/// Default: 1 s. [`Duration::ZERO`] stops background publication (counts
/// then reach the recorder only through [`flush`]); while it is zero the
/// thread is not started, and a running one publishes nothing.
pub fn set_publish_interval(interval: Duration) {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    INTERVAL_NANOS.store(nanos, Ordering::Relaxed);
    if nanos != 0 && REGISTERED.load(Ordering::Relaxed) {
        start_publisher();
    }
}

/// The background publication interval (see [`set_publish_interval`]).
#[must_use]
pub fn publish_interval() -> Duration {
    Duration::from_nanos(INTERVAL_NANOS.load(Ordering::Relaxed))
}

/// Whether some layer has registered (the publisher has work).
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Called with each registration: starts the background publisher once,
/// unless publication is off. It holds no layer alive (the registry keeps
/// weak links) and, when it cannot start, counts still reach the recorder
/// through [`flush`].
pub(crate) fn registered() {
    REGISTERED.store(true, Ordering::Relaxed);
    if INTERVAL_NANOS.load(Ordering::Relaxed) != 0 {
        start_publisher();
    }
}

fn start_publisher() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("buttress-telemetry".into())
        .spawn(|| {
            loop {
                let nanos = INTERVAL_NANOS.load(Ordering::Relaxed);
                std::thread::park_timeout(Duration::from_nanos(if nanos == 0 {
                    1_000_000_000
                } else {
                    nanos
                }));
                if INTERVAL_NANOS.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                // No local recorder on this thread: the global one (or
                // the no-op recorder before one is installed).
                metrics::with_recorder(publish_to);
            }
        });
}

/// A histogram recorded where its samples happen (a cache load, a breaker
/// transition), never on a per-call hot path: each sample looks its series
/// up in the recorder in force, so a layer built before the recorder was
/// installed records into it all the same.
pub struct Histogram {
    key: Key,
}

impl Histogram {
    /// The histogram `metric` of the instance `name`.
    #[must_use]
    pub fn new(metric: &'static str, name: Name) -> Self {
        Self {
            key: Key::from_parts(
                metric,
                vec![Label::from_static_parts("name", name.as_str())],
            ),
        }
    }

    /// Records one sample.
    pub fn record(&self, value: f64) {
        metrics::with_recorder(|r| r.register_histogram(&self.key, &METADATA).record(value));
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Histogram").field(&self.key.name()).finish()
    }
}
