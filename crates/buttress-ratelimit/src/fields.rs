//! Whether and how a response carries the rate limit's fields.

use crate::decision::Decision;

/// Writes a decision's fields into a response (see
/// [`RateLimitLayer::with_headers`](crate::RateLimitLayer::with_headers)).
pub trait Fields<Resp> {
    /// Adds `decision`'s fields to `response`.
    fn stamp(&self, response: &mut Resp, decision: &Decision);
}

/// No fields: the response is left as the service made it (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFields;

impl<Resp> Fields<Resp> for NoFields {
    #[inline]
    fn stamp(&self, _: &mut Resp, _: &Decision) {}
}
