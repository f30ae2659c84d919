//! Telemetry shared by every buttress layer: instance [`Name`]s, the
//! metric catalog, and publication to the `metrics` recorder.
//!
//! # How counts reach the recorder
//!
//! A layer never touches the recorder on a call. It counts in its own
//! memory ([`Count`]: per-thread stripes), and its counts are published
//! as absolute totals and current values:
//!
//! - by a background thread every second (see [`set_publish_interval`]),
//!   to the global recorder;
//! - by [`flush`], to the recorder in force on the calling thread: call it
//!   in your `/metrics` handler before rendering for exact figures.
//!
//! So metric handles are resolved against the recorder in force when the
//! counts are published, not when the layer was built: the usual `main`
//! (build the layers, then install the exporter) loses nothing. Samples
//! of a distribution ([`Histogram`]) are recorded where they happen,
//! looked up in the recorder in force at that moment.
//!
//! # Names
//!
//! Every series carries one label, `name`, naming the layer instance (the
//! metric name says the layer kind). A layer without a name is named after
//! the source line that built it ([`Name::caller`]); two live instances of
//! one kind never share a name ([`Registration`]).
//!
//! ```
//! use buttress_core::telemetry::{flush, Name};
//!
//! // e.g. in a `/metrics` handler:
//! flush();
//! assert_eq!(Name::new("payments").as_str(), "payments");
//! ```

mod catalog;
mod count;
mod name;
mod publish;

pub use catalog::{MetricInfo, MetricKind, Unit, catalog, register_catalog};
pub use count::Count;
pub use name::{Name, Registration};
pub use publish::{Emit, Histogram, Publish, flush, publish_interval, set_publish_interval};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    static CATALOG: &[MetricInfo] = &[MetricInfo {
        name: "buttress_test_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "A test counter.",
    }];

    struct Source {
        reg: Registration,
        count: Count,
    }

    impl Publish for Source {
        fn publish(&self, out: &mut Emit<'_>) {
            assert_eq!(out.name(), self.reg.name());
            out.counter("buttress_test_total", self.count.get());
        }
    }

    #[test]
    fn a_source_built_before_the_recorder_publishes_into_it() {
        register_catalog(CATALOG);
        let source = Arc::new(Source {
            reg: Registration::new("test-publish", Name::new("early")),
            count: Count::new(),
        });
        let weak: std::sync::Weak<dyn Publish> = Arc::downgrade(&source) as _;
        source.reg.attach(weak);
        source.count.add(3);

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, flush);
        let found: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == "buttress_test_total")
            .collect();
        assert_eq!(found.len(), 1);
        let (key, unit, help, value) = &found[0];
        assert_eq!(key.key().labels().next().unwrap().value(), "early");
        assert_eq!(*value, DebugValue::Counter(3));
        assert_eq!(*unit, Some(Unit::Count));
        assert_eq!(help.as_deref(), Some("A test counter."));

        drop(source);
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, flush);
        assert!(
            snapshotter
                .snapshot()
                .into_vec()
                .iter()
                .all(|(k, ..)| k.key().name() != "buttress_test_total"),
            "a dropped source publishes nothing"
        );
    }
}
