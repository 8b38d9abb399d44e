//! Warm instances per function version: reused while warm, started up to the version's reserved concurrency and
//! the process-wide limit, and stopped after an idle time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::instance::Instance;

/// Which instances may serve an invocation: one function version with one configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub function: String,
    /// `$LATEST` or the version number.
    pub version: String,
    /// The configuration's revision: an update never reaches an instance started before it.
    pub revision: i64,
}

#[derive(Default)]
struct Slot {
    idle: Vec<Arc<Instance>>,
    busy: usize,
}

/// Every pool of this process.
pub(crate) struct Pools {
    slots: parking_lot::Mutex<HashMap<PoolKey, Slot>>,
    max_total: usize,
}

/// What [`Pools::acquire`] found.
pub(crate) enum Acquired {
    /// A warm instance.
    Warm(Arc<Instance>),
    /// Room for a new one: start it (the slot is counted as busy already).
    Start,
    /// At the limit.
    Throttled,
}

impl Pools {
    pub fn new(max_total: usize) -> Self {
        Self { slots: Default::default(), max_total: max_total.max(1) }
    }

    fn total(slots: &HashMap<PoolKey, Slot>) -> usize {
        slots.values().map(|s| s.busy + s.idle.len()).sum()
    }

    /// A warm instance, or room to start one within `reserved` (per function) and the process limit.
    pub fn acquire(&self, key: &PoolKey, reserved: Option<u32>) -> Acquired {
        let mut slots = self.slots.lock();
        // An idle instance of another key holds a place that a cold start here may take back.
        let total = Self::total(&slots);
        let function_busy: usize = slots.iter().filter(|(k, _)| k.function == key.function).map(|(_, s)| s.busy).sum();
        let slot = slots.entry(key.clone()).or_default();
        while let Some(i) = slot.idle.pop() {
            if i.is_healthy() {
                slot.busy += 1;
                return Acquired::Warm(i);
            }
        }
        let under_reserved = reserved.is_none_or(|r| function_busy < r as usize);
        if !under_reserved {
            return Acquired::Throttled;
        }
        if total < self.max_total {
            slot.busy += 1;
            return Acquired::Start;
        }
        // At the process limit: stop the longest-idle instance of another version to make room.
        let victim = slots
            .iter_mut()
            .filter(|(k, s)| *k != key && !s.idle.is_empty())
            .min_by_key(|(_, s)| s.idle.iter().map(|i| *i.last_used.lock()).min())
            .map(|(_, s)| s.idle.remove(0));
        match victim {
            Some(v) => {
                v.kill();
                slots.entry(key.clone()).or_default().busy += 1;
                Acquired::Start
            }
            None => Acquired::Throttled,
        }
    }

    /// Gives a slot back: the instance returns to the idle list when it may be reused.
    pub fn release(&self, key: &PoolKey, instance: Option<Arc<Instance>>) {
        let mut slots = self.slots.lock();
        let slot = slots.entry(key.clone()).or_default();
        slot.busy = slot.busy.saturating_sub(1);
        if let Some(i) = instance.filter(|i| i.is_healthy()) {
            slot.idle.push(i);
        }
    }

    /// Stops instances idle for longer than `idle` (scale to zero); how many.
    pub fn reap_idle(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut stopped = Vec::new();
        let mut slots = self.slots.lock();
        for slot in slots.values_mut() {
            slot.idle.retain(|i| {
                let keep = i.is_healthy() && now.duration_since(*i.last_used.lock()) < idle;
                if !keep {
                    stopped.push(i.clone());
                }
                keep
            });
        }
        slots.retain(|_, s| s.busy > 0 || !s.idle.is_empty());
        drop(slots);
        for i in &stopped {
            i.kill();
        }
        stopped.len()
    }

    /// Stops every idle instance of a function (after an update or a delete).
    pub fn retire(&self, function: &str) {
        let mut slots = self.slots.lock();
        for (k, slot) in slots.iter_mut() {
            if k.function == function {
                for i in slot.idle.drain(..) {
                    i.kill();
                }
            }
        }
    }

    /// Instances of a function: (busy, idle).
    pub fn counts(&self, function: &str) -> (usize, usize) {
        let slots = self.slots.lock();
        slots
            .iter()
            .filter(|(k, _)| k.function == function)
            .fold((0, 0), |(b, i), (_, s)| (b + s.busy, i + s.idle.len()))
    }
}
