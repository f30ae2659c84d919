//! Hedged requests ("The Tail at Scale", Dean & Barroso 2013): when a
//! request is slower than most, send a copy and take whichever answers
//! first.
//!
//! ```
//! use std::time::Duration;
//! use buttress_retry::{HedgeDelay, HedgeLayer, HedgePolicy, RetryBudget};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 5 % of requests, and (for this one-request example) one hedge a second.
//! let budget = RetryBudget::builder().percent(5.0).min_per_second(1).build().unwrap();
//! let hedge = HedgePolicy::builder()
//!     .delay(HedgeDelay::Fixed(Duration::from_millis(50)))
//!     .budget(budget)
//!     .build()
//!     .unwrap();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let c = calls.clone();
//! // The first call hangs for a second; the copy answers at once.
//! let backend = service_fn(move |_: ()| {
//!     let n = c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!     async move {
//!         if n == 0 { tokio::time::sleep(Duration::from_secs(1)).await; }
//!         Ok::<_, std::io::Error>(n)
//!     }
//! });
//! let svc = ServiceBuilder::new().layer(HedgeLayer::new(hedge.clone())).service(backend);
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.oneshot(()).await.unwrap(), 1, "the hedge won");
//! assert_eq!(start.elapsed(), Duration::from_millis(50));
//! assert_eq!(hedge.snapshot().hedge_won, 1);
//! # }
//! ```
//!
//! Only requests the [`Replay`](crate::Replay) copies are hedged: with
//! [`HttpReplay`](crate::http::HttpReplay), idempotent ones. A hedge is sent
//! only while the hedge budget (a [`RetryBudget`](crate::RetryBudget), 5 % of requests by
//! default) allows. The first *success* wins; an error is returned only
//! when every attempt in flight has failed. The losers are dropped, which
//! cancels them.

mod config;
pub(crate) mod future;
mod handle;
mod layer;
mod service;

pub use self::config::{HedgeDelay, HedgePolicyBuilder, MAX_HEDGES};
pub use self::handle::{HedgePolicy, HedgePolicySnapshot};
pub use self::layer::HedgeLayer;
pub use self::service::HedgeService;
