//! A small cache of per-shape execution plans (buffers + bind groups), shared by the
//! graph runner and the sentence model: built once per key, reused, oldest dropped first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Plans kept; the oldest is dropped beyond this.
const MAX_PLANS: usize = 8;

/// Plans keyed by `K` (batch size, sequence length, head...).
#[derive(Debug)]
pub(crate) struct PlanCache<K, P> {
    plans: Mutex<VecDeque<(K, Arc<P>)>>,
}

impl<K, P> Default for PlanCache<K, P> {
    fn default() -> Self {
        Self { plans: Mutex::new(VecDeque::new()) }
    }
}

impl<K: PartialEq, P> PlanCache<K, P> {
    /// The plan for `key`, built by `build` on first use.
    pub(crate) fn get_or_build(&self, key: K, build: impl FnOnce() -> Result<P>) -> Result<Arc<P>> {
        let mut plans = self.plans.lock().map_err(|_| poisoned())?;
        if let Some((_, plan)) = plans.iter().find(|(k, _)| *k == key) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(build()?);
        if plans.len() >= MAX_PLANS {
            plans.pop_front();
        }
        plans.push_back((key, plan.clone()));
        Ok(plan)
    }

    /// Drops every plan.
    pub(crate) fn clear(&self) -> Result<()> {
        self.plans.lock().map_err(|_| poisoned())?.clear();
        Ok(())
    }
}

/// The error for a lock a panicking thread left behind.
pub(crate) fn poisoned() -> Error {
    Error::Gpu { context: "locking a plan".into(), message: "a previous call panicked".into() }
}
