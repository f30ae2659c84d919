//! [`Guarded`]: the caller's bb8 manager wrapped so that a connection can
//! be discarded instead of returned. bb8 0.9 has no public way to drop a
//! checked-out connection (`PooledConnection::take` is crate-private); it
//! does ask the manager's `has_broken` whenever a connection comes back,
//! so each connection carries a flag that `has_broken` reports.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use bb8::ManageConnection;

use crate::telemetry::Counts;

/// A connection as the pool holds it: the manager's connection and
/// whether it must be discarded when it comes back.
pub(crate) struct Tracked<C> {
    pub(crate) conn: C,
    /// Set when the connection must not be reused (its call was cancelled
    /// half-way, or a caller marked it broken).
    pub(crate) poisoned: bool,
    /// Set when the manager reported it broken or a health check failed.
    broken: bool,
    counts: Arc<Counts>,
}

impl<C> Drop for Tracked<C> {
    fn drop(&mut self) {
        if self.poisoned || self.broken {
            self.counts.closed_broken.add(1);
        } else {
            self.counts.closed_retired.add(1);
        }
    }
}

impl<C> fmt::Debug for Tracked<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("poisoned", &self.poisoned)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// The caller's manager `M`, as the pool's bb8 manager: connections are
/// [`Tracked`], and connect and health-check failures are counted.
pub(crate) struct Guarded<M> {
    pub(crate) inner: Arc<M>,
    pub(crate) counts: Arc<Counts>,
    /// The last connection error's `Debug` text, for `ConnectFailed`.
    pub(crate) last_error: Arc<Mutex<Option<String>>>,
}

impl<M> fmt::Debug for Guarded<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded").finish_non_exhaustive()
    }
}

impl<M> Guarded<M> {
    fn failed(&self, e: &dyn fmt::Debug) {
        self.counts.errors.add(1);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(format!("{e:?}"));
    }
}

impl<M: ManageConnection> ManageConnection for Guarded<M> {
    type Connection = Tracked<M::Connection>;
    type Error = M::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        match self.inner.connect().await {
            Ok(conn) => {
                self.counts.created.add(1);
                Ok(Tracked {
                    conn,
                    poisoned: false,
                    broken: false,
                    counts: Arc::clone(&self.counts),
                })
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        match self.inner.is_valid(&mut conn.conn).await {
            Ok(()) => Ok(()),
            Err(e) => {
                conn.broken = true;
                self.failed(&e);
                Err(e)
            }
        }
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        let broken = conn.poisoned || self.inner.has_broken(&mut conn.conn);
        conn.broken |= broken;
        broken
    }
}
