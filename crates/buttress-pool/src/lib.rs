//! bb8 connection pools as tower services (issue #15, first slice).
//!
//! This slice holds the pool's settings ([`PoolBuilder`], [`PoolConfig`],
//! with the defaults and their reasoning), its failure type
//! ([`ConnectFailed`]; exhaustion is the shared
//! [`Overloaded`]), its metric catalog
//! ([`METRICS`]) and the manager wrapper that lets a cancelled or broken
//! connection be discarded instead of returned to bb8. The handle, the
//! `PoolService` and the tests come next.

// The builder's `build()` comes with the handle.
#[allow(dead_code)]
mod config;
mod error;
// The wrapper and the counts are used by the pool handle, which is not
// in this slice yet.
#[allow(dead_code)]
mod manager;
#[allow(dead_code)]
mod telemetry;

pub use buttress_core::reject::Overloaded;
pub use config::{PoolBuilder, PoolConfig};
pub use error::ConnectFailed;
pub use telemetry::METRICS;
