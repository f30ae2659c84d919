//! Key extraction for keyed layers (a breaker per host, a cache entry per URI).

/// Extracts a key from a request.
///
/// Returning `None` means "this request has no key": each keyed layer
/// documents what it then does (a keyed breaker lets the request through
/// unguarded; a cache bypasses itself). It is never an error for the caller.
///
/// Implemented for closures `Fn(&Req) -> Option<K>`:
///
/// ```
/// use buttress_core::key::KeyExtractor;
///
/// let by_tenant = |req: &(String, u32)| Some(req.0.clone());
/// assert_eq!(by_tenant.extract(&("acme".to_string(), 7)), Some("acme".to_string()));
/// ```
pub trait KeyExtractor<Req> {
    /// The key type.
    type Key;

    /// Extracts the key, or `None` if the request has none.
    fn extract(&self, req: &Req) -> Option<Self::Key>;
}

impl<F, Req, K> KeyExtractor<Req> for F
where
    F: Fn(&Req) -> Option<K>,
{
    type Key = K;

    #[inline]
    fn extract(&self, req: &Req) -> Option<K> {
        self(req)
    }
}
