//! A scripted backend shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

/// A response: the key it answers and the backend's version when it did.
pub type Answer = (u64, u64);

/// A backend answering `(key, version)` after `delay` (paused time), or
/// failing while `fail` is set. Counts calls started, calls finished,
/// readiness polls and the most calls running at once.
#[derive(Clone, Default)]
pub struct Backend {
    pub started: Arc<AtomicUsize>,
    pub finished: Arc<AtomicUsize>,
    pub ready_polls: Arc<AtomicUsize>,
    pub running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
    pub version: Arc<AtomicU64>,
    pub fail: Arc<AtomicBool>,
    pub delay: Duration,
}

impl Backend {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    pub fn set_version(&self, v: u64) {
        self.version.store(v, Ordering::SeqCst);
    }

    pub fn set_failing(&self, failing: bool) {
        self.fail.store(failing, Ordering::SeqCst);
    }
}

impl Service<u64> for Backend {
    type Response = Answer;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Answer>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ready_polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, key: u64) -> Self::Future {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let this = self.clone();
        // The answer is as of the call, like a database read.
        let version = self.version.load(Ordering::SeqCst);
        Box::pin(async move {
            struct Done(Backend);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.running.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let done = Done(this);
            if !done.0.delay.is_zero() {
                tokio::time::sleep(done.0.delay).await;
            }
            done.0.finished.fetch_add(1, Ordering::SeqCst);
            if done.0.fail.load(Ordering::SeqCst) {
                Err(io::Error::other("backend down"))
            } else {
                Ok((key, version))
            }
        })
    }
}
