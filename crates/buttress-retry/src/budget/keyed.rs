//! [`KeyedBudgets`]: one [`RetryBudget`] per key.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use super::{RetryBudget, RetryBudgetBuilder};

/// One [`RetryBudget`] per key (a host, a tenant), made from a template on
/// the key's first request, at most `max_keys` of them; see
/// [`RetryPolicyBuilder::budget_per_key`](crate::RetryPolicyBuilder::budget_per_key).
pub(crate) struct KeyedBudgets {
    template: RetryBudgetBuilder,
    max_keys: usize,
    budgets: RwLock<HashMap<u64, RetryBudget>>,
}

impl fmt::Debug for KeyedBudgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBudgets")
            .field("template", &self.template)
            .field("max_keys", &self.max_keys)
            .field("keys", &self.len())
            .finish()
    }
}

impl KeyedBudgets {
    pub(crate) fn new(template: RetryBudgetBuilder, max_keys: usize) -> Self {
        Self {
            template,
            max_keys,
            budgets: RwLock::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.budgets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Runs `f` on `key`'s budget, creating it if there is room; `None` when
    /// the key has no budget and there is no room for one.
    pub(crate) fn with<T>(&self, key: u64, f: impl FnOnce(&RetryBudget) -> T) -> Option<T> {
        {
            let map = self.budgets.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(b) = map.get(&key) {
                return Some(f(b));
            }
        }
        let mut map = self.budgets.write().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&key) {
            if map.len() >= self.max_keys {
                return None;
            }
            // The template was validated when the policy was built.
            let budget = self.template.clone().build().ok()?;
            map.insert(key, budget);
        }
        map.get(&key).map(f)
    }

    /// `key`'s budget, if it has one.
    pub(crate) fn get(&self, key: u64) -> Option<RetryBudget> {
        self.budgets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
    }
}
