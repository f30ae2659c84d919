//! Partitions: named guaranteed shares of the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use buttress_core::stripe::Padded;
use buttress_core::telemetry::Count;

use super::snapshot::PartitionSnapshot;

/// The partition index of a call outside every partition.
pub(crate) const NO_PARTITION: usize = usize::MAX;

/// One partition: its share, the calls it holds, the calls it had shed.
pub(crate) struct Partition {
    pub(crate) name: Arc<str>,
    share: f64,
    pub(super) in_flight: Padded<AtomicU32>,
    /// Calls in this partition shed (at once, queue full, or after the
    /// queue's maximum wait).
    pub(super) rejected: Count,
}

impl Partition {
    pub(super) fn new(name: Arc<str>, share: f64) -> Self {
        Self {
            name,
            share,
            in_flight: Padded(AtomicU32::new(0)),
            rejected: Count::new(),
        }
    }

    /// `max(1, ⌈L · share⌉)`.
    #[inline]
    pub(super) fn guaranteed(&self, limit: u32) -> u32 {
        let g = (f64::from(limit) * self.share).ceil();
        if g >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            (g as u32).max(1)
        }
    }

    /// Calls in this partition holding a permit now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.0.load(Ordering::Relaxed)
    }

    /// Calls in this partition shed since the limiter was built.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.get()
    }

    /// This partition's counters, at the limit `limit`.
    pub(super) fn snapshot(&self, limit: u32) -> PartitionSnapshot {
        PartitionSnapshot {
            in_flight: self.in_flight(),
            rejected: self.rejected(),
            guaranteed: self.guaranteed(limit),
        }
    }
}
