//! The retry budget (Finagle's `RetryBudget`): lock-free and exact.
//! [`RetryBudget`] and its slot accounting here; its builder in `config`,
//! the per-key budgets in `keyed`.

mod config;
mod keyed;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buttress_core::time::Origin;

pub use self::config::RetryBudgetBuilder;
pub(crate) use self::keyed::KeyedBudgets;

/// Deposits and withdrawals live in slots of `ttl / SLOTS`.
const SLOTS: u64 = 10;
/// Slots in the ring: at least one more than the TTL spans, so a withdrawal
/// is remembered for at least the whole TTL (see [`Inner::balance`]); a
/// power of two, so finding a slot is a mask rather than a division.
const RING: usize = 16;
/// Epochs summed for withdrawals.
const WITHDRAWAL_SLOTS: u64 = SLOTS + 1;
/// Units per retry: a deposit adds `fraction · UNIT`, a withdrawal takes `UNIT`.
const UNIT: u128 = 1_000_000;
/// A slot word: the epoch it belongs to (high 32 bits) and its count (low 32).
const COUNT_MASK: u64 = (1 << 32) - 1;
/// Deposits between two clock reads on the deposit path.
const REFRESH_EVERY: u64 = 16;

/// Deposit stripes: threads deposit into different cache lines.
const STRIPES: usize = 16;

/// One stripe's deposit slots, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; RING]);

/// This thread's stripe.
#[inline]
fn stripe() -> usize {
    buttress_core::stripe::thread_stripe() % STRIPES
}

/// The largest `percent` a budget accepts (tower's `TpsBudget` allows the same).
pub const MAX_BUDGET_PERCENT: f64 = 1000.0;

/// A retry budget: retries may make up at most a fraction of recent
/// requests, plus a small allowance per second, so a failing dependency
/// sees at most `(1 + fraction) ×` its normal load instead of `max_attempts ×`.
///
/// Every request [deposits](Self::deposit) `fraction` of a retry; every
/// retry [withdraws](Self::withdraw) one. Both expire after the TTL. With
/// Finagle's defaults (20 %, 10 per second, 10 s), a client sending 100
/// requests per second to a dead backend may retry 20 + 10 of them each
/// second.
///
/// ```
/// use std::time::Duration;
/// use buttress_retry::RetryBudget;
///
/// let budget = RetryBudget::builder()
///     .percent(30.0)
///     .min_per_second(0)
///     .ttl(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// // Exactly 3 retries for 10 requests at 30 % (tower's `TpsBudget` grants 4).
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// ```
///
/// # Exactness
///
/// Accounting is in integer millionths of a retry, so a fractional percent
/// is exact (tower issue #857: `TpsBudget` rounds `1 / fraction` down and
/// over-grants; at 30 % it allows one retry per 3 requests). Time is kept
/// in ten slots of `ttl / 10`: a deposit counts for between 0.9 and 1.0 ×
/// the TTL and a withdrawal for between 1.0 and 1.1 ×, so the rounding
/// always errs towards fewer retries. Concurrent withdrawals cannot both
/// take the last retry: each is validated by a compare-and-swap on a
/// sequence number after being recorded.
///
/// # Cost
///
/// A deposit is two loads and a store into this thread's stripe (no locked
/// instruction; threads sharing a stripe can only lose deposits, never
/// invent them), and reads the clock once every 16 deposits per stripe (to
/// notice a new slot; between reads, deposits go to the slot last seen,
/// which can only make them expire sooner). A withdrawal reads the clock
/// and every slot.
///
/// # Clone
///
/// Clones share one budget. Give each dependency its own.
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    /// Deposits (requests) per stripe and slot.
    deposits: Box<[Stripe; STRIPES]>,
    /// Withdrawals (retries) per slot.
    withdrawals: [AtomicU64; RING],
    /// The newest epoch anyone has seen.
    epoch: AtomicU64,
    /// Bumped by every successful withdrawal.
    seq: AtomicU64,
    origin: Origin,
    slot_nanos: u64,
    /// A deposit's worth, in units (`fraction · UNIT`).
    deposit_units: u128,
    /// The per-TTL allowance, in units (`min_per_second · ttl · UNIT`).
    reserve_units: u128,
    percent: f64,
    min_per_second: u32,
    ttl: Duration,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("percent", &self.inner.percent)
            .field("min_per_second", &self.inner.min_per_second)
            .field("ttl", &self.inner.ttl)
            .field("available", &self.available())
            .finish()
    }
}

impl Default for RetryBudget {
    /// Finagle's defaults: 20 %, 10 per second, 10 s.
    fn default() -> Self {
        RetryBudgetBuilder::new()
            .build()
            .expect("the default budget is valid")
    }
}

impl RetryBudget {
    /// A builder with Finagle's defaults.
    #[must_use]
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::new()
    }

    /// Records one request: it makes `fraction` of a retry available for
    /// the TTL. The retry layer calls this once per request (not per
    /// attempt).
    #[inline]
    pub fn deposit(&self) {
        let inner = &*self.inner;
        let epoch = inner.epoch.load(Ordering::Relaxed);
        let slot = &inner.deposits[stripe()].0[(epoch as usize) & (RING - 1)];
        // A plain load and store, no locked instruction: a thread has its
        // own stripe, and when two threads share one, a lost update only
        // under-counts deposits (fewer retries, never more).
        let tag = (epoch & COUNT_MASK) << 32;
        let word = slot.load(Ordering::Relaxed);
        let next = if word & !COUNT_MASK == tag {
            if word & COUNT_MASK == COUNT_MASK {
                return;
            }
            word + 1
        } else if (word >> 32).wrapping_sub(epoch & COUNT_MASK) & COUNT_MASK < (1 << 31) {
            // The slot already belongs to a newer epoch: our epoch is stale.
            inner.refresh();
            return self.deposit();
        } else {
            tag | 1
        };
        slot.store(next, Ordering::Release);
        if (next & COUNT_MASK).is_multiple_of(REFRESH_EVERY) {
            inner.refresh();
        }
    }

    /// Takes one retry from the budget, if one is available.
    pub fn withdraw(&self) -> bool {
        let inner = &*self.inner;
        loop {
            let epoch = inner.refresh();
            let seq = inner.seq.load(Ordering::Acquire);
            if inner.balance(epoch) < UNIT {
                return false;
            }
            // Record first, then claim: a withdrawal that loses the race is
            // undone, so two can never spend the same last retry.
            inner.add(&inner.withdrawals, epoch);
            if inner
                .seq
                .compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
            inner.undo(&inner.withdrawals, epoch);
        }
    }

    /// How many whole retries are available now.
    #[must_use]
    pub fn available(&self) -> u64 {
        let inner = &*self.inner;
        // A read: it leaves the published epoch alone, so that reading
        // the budget (a metrics publication, on any thread and clock)
        // never changes what its deposits and withdrawals see.
        let epoch = inner.epoch_now().max(inner.epoch.load(Ordering::Acquire));
        u64::try_from(inner.balance(epoch) / UNIT).unwrap_or(u64::MAX)
    }

    /// The configured percentage of requests that may be retried.
    #[must_use]
    pub fn percent(&self) -> f64 {
        self.inner.percent
    }
}

impl Inner {
    fn epoch_now(&self) -> u64 {
        self.origin.elapsed_nanos() / self.slot_nanos
    }

    /// Reads the clock and publishes the current epoch.
    fn refresh(&self) -> u64 {
        let now = self.epoch_now();
        let seen = self.epoch.fetch_max(now, Ordering::AcqRel);
        seen.max(now)
    }

    /// Adds one to `slots`' word for `epoch` (resetting a word left from an
    /// older epoch); returns the new count.
    #[inline]
    fn add(&self, slots: &[AtomicU64; RING], epoch: u64) -> u64 {
        let slot = &slots[(epoch as usize) & (RING - 1)];
        let tag = (epoch & COUNT_MASK) << 32;
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let next = if word & !COUNT_MASK == tag {
                if word & COUNT_MASK == COUNT_MASK {
                    return COUNT_MASK; // saturated: 4 billion in one slot
                }
                word + 1
            } else if (word >> 32) > (epoch & COUNT_MASK)
                && (word >> 32) - (epoch & COUNT_MASK) < (1 << 31)
            {
                // A newer epoch already owns this slot: count there.
                return self.add(slots, word >> 32);
            } else {
                tag | 1
            };
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return next & COUNT_MASK,
                Err(actual) => word = actual,
            }
        }
    }

    /// Takes back one recorded in `epoch`, if its slot still holds it.
    fn undo(&self, slots: &[AtomicU64; RING], epoch: u64) {
        let slot = &slots[(epoch as usize) & (RING - 1)];
        let tag = (epoch & COUNT_MASK) << 32;
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            (w & !COUNT_MASK == tag && w & COUNT_MASK > 0).then_some(w - 1)
        });
    }

    /// The count `slots` holds for `epoch`, or 0 if its slot moved on.
    fn count(slots: &[AtomicU64; RING], epoch: u64) -> u64 {
        let w = slots[(epoch as usize) & (RING - 1)].load(Ordering::Acquire);
        if w >> 32 == epoch & COUNT_MASK {
            w & COUNT_MASK
        } else {
            0
        }
    }

    /// Units available at `epoch`: the reserve, plus deposits of the last
    /// `SLOTS` epochs (this one included), minus withdrawals of the last
    /// `SLOTS + 1`.
    fn balance(&self, epoch: u64) -> u128 {
        let mut deposits: u128 = 0;
        let mut withdrawals: u128 = 0;
        for back in 0..WITHDRAWAL_SLOTS {
            let Some(e) = epoch.checked_sub(back) else {
                break;
            };
            if back < SLOTS {
                for stripe in self.deposits.iter() {
                    deposits += u128::from(Self::count(&stripe.0, e));
                }
            }
            withdrawals += u128::from(Self::count(&self.withdrawals, e));
        }
        (self.reserve_units + deposits * self.deposit_units).saturating_sub(withdrawals * UNIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn budget(percent: f64, min: u32) -> RetryBudget {
        RetryBudget::builder()
            .percent(percent)
            .min_per_second(min)
            .build()
            .unwrap()
    }

    fn drain(b: &RetryBudget) -> u64 {
        let mut n = 0;
        while b.withdraw() {
            n += 1;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_percents_are_exact() {
        // tower#857: 1/0.3 rounds to 3, so TpsBudget grants one retry per 3
        // requests (333 for 1000). Here: 300.
        for (percent, requests, retries) in [
            (30.0, 1000, 300),
            (20.0, 1000, 200),
            (33.3, 1000, 333),
            (12.5, 8, 1),
            (12.5, 7, 0),
            (150.0, 10, 15),
            (0.0, 1000, 0),
        ] {
            let b = budget(percent, 0);
            for _ in 0..requests {
                b.deposit();
            }
            assert_eq!(b.available(), retries, "{percent} % of {requests}");
            assert_eq!(drain(&b), retries, "{percent} % of {requests}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_is_per_ttl() {
        let b = budget(0.0, 10);
        assert_eq!(drain(&b), 100, "10/s over a 10 s TTL");
        advance(Duration::from_secs(5)).await;
        assert_eq!(drain(&b), 0, "withdrawals still count");
        advance(Duration::from_millis(5_999)).await;
        assert_eq!(drain(&b), 0, "a withdrawal counts for at least the TTL");
        advance(Duration::from_millis(1)).await;
        assert_eq!(drain(&b), 100, "... and at most 1.1 × the TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_within_the_ttl() {
        let b = budget(100.0, 0);
        for _ in 0..10 {
            b.deposit();
        }
        advance(Duration::from_millis(8_999)).await;
        assert_eq!(b.available(), 10, "live for at least 0.9 × TTL");
        advance(Duration::from_millis(1_001)).await;
        assert_eq!(b.available(), 0, "gone after the TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_epoch_only_shortens_deposits() {
        let b = budget(100.0, 0);
        // One deposit refreshes the epoch now; then 12 s pass with no clock
        // read on the deposit path: the next deposits land in an old slot
        // until the 16th triggers a refresh.
        b.deposit();
        advance(Duration::from_secs(12)).await;
        for _ in 0..5 {
            b.deposit();
        }
        assert!(b.available() <= 5);
        b.withdraw();
        // A withdrawal refreshed the epoch: deposits now land in the right slot.
        for _ in 0..5 {
            b.deposit();
        }
        assert!(b.available() >= 5);
    }

    #[test]
    fn concurrent_withdrawals_never_overspend() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        let b = budget(50.0, 0);
        for _ in 0..10_000 {
            b.deposit();
        }
        let taken: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    let rt = &rt;
                    s.spawn(move || {
                        let _guard = rt.enter();
                        drain(&b)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(taken, 5_000);
    }

    #[test]
    fn rejects_bad_settings_by_name() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let field = |b: RetryBudgetBuilder| b.build().unwrap_err().field();
        assert_eq!(field(RetryBudgetBuilder::new().percent(-1.0)), "percent");
        assert_eq!(
            field(RetryBudgetBuilder::new().percent(f64::NAN)),
            "percent"
        );
        assert_eq!(field(RetryBudgetBuilder::new().percent(1000.1)), "percent");
        assert_eq!(
            field(RetryBudgetBuilder::new().ttl(Duration::from_millis(999))),
            "ttl"
        );
        assert_eq!(
            field(RetryBudgetBuilder::new().ttl(Duration::from_secs(61))),
            "ttl"
        );
    }
}
