use super::{Limit, Sample};

/// A static limit that never moves: tower's `ConcurrencyLimit`, with the
/// rest of this crate (shedding, queueing, partitions, telemetry).
///
/// ```
/// use buttress_limit::algorithm::{Fixed, Limit};
/// assert_eq!(Fixed::new(64).limit(), 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    limit: u32,
}

impl Fixed {
    /// A limit of `limit` (0 is raised to 1).
    #[must_use]
    pub const fn new(limit: u32) -> Self {
        Self {
            limit: if limit == 0 { 1 } else { limit },
        }
    }
}

impl Limit for Fixed {
    fn limit(&self) -> u32 {
        self.limit
    }

    fn update(&mut self, _: &Sample) -> u32 {
        self.limit
    }

    fn name(&self) -> &'static str {
        "fixed"
    }
}
