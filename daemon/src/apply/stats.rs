//! Counters of what the runner did: events, effects per target, links, journal entries.
//! `skladsync demo` prints them; the daemon logs them.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A copy of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events evaluated, by name.
    pub events: BTreeMap<String, u64>,
    /// Effects applied, by `op system.entity`.
    pub effects: BTreeMap<String, u64>,
    /// Links written.
    pub links: u64,
    /// Journal entries written.
    pub journal: u64,
    /// Skips recorded.
    pub skips: u64,
    /// Effects that failed.
    pub failures: u64,
    /// МойСклад changes ignored as echoes of our own writes.
    pub echoes: u64,
    /// Items parked (their evaluation failed in a way that repeats).
    pub parked: u64,
    /// Items given up (`GAVE_UP`).
    pub gave_up: u64,
    /// Events processed, by (event name, outcome): `applied`, `failed`, `parked`,
    /// `lookup_failed`, `interrupted`.
    pub event_outcomes: BTreeMap<(String, String), u64>,
    /// Effects run, by (kind, outcome): kind as in [`StatsSnapshot::effects`] for writes,
    /// else the action (`link order`, `journal`, `task`, `skip`); outcome `ok` or `failed`.
    pub effect_outcomes: BTreeMap<(String, String), u64>,
}

/// Shared counters.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsSnapshot>,
}

impl Stats {
    fn with(&self, f: impl FnOnce(&mut StatsSnapshot)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// An event was evaluated.
    pub fn event(&self, name: &str) {
        self.with(|s| *s.events.entry(name.to_string()).or_default() += 1);
    }

    /// An effect was applied.
    pub fn effect(&self, op: &str, system: &str, entity: &str) {
        self.with(|s| {
            *s.effects
                .entry(format!("{op} {system}.{entity}"))
                .or_default() += 1
        });
    }

    /// A link was written.
    pub fn link(&self) {
        self.with(|s| s.links += 1);
    }

    /// A journal entry was written.
    pub fn journal(&self) {
        self.with(|s| s.journal += 1);
    }

    /// A skip was recorded.
    pub fn skip(&self) {
        self.with(|s| s.skips += 1);
    }

    /// An effect failed.
    pub fn failure(&self) {
        self.with(|s| s.failures += 1);
    }

    /// An echo of our own write was ignored.
    pub fn echo(&self) {
        self.with(|s| s.echoes += 1);
    }

    /// An item was parked.
    pub fn parked(&self) {
        self.with(|s| s.parked += 1);
    }

    /// An item was given up.
    pub fn gave_up(&self) {
        self.with(|s| s.gave_up += 1);
    }

    /// An event's processing ended with `outcome`.
    pub fn event_outcome(&self, name: &str, outcome: &str) {
        self.with(|s| {
            *s.event_outcomes
                .entry((name.to_string(), outcome.to_string()))
                .or_default() += 1
        });
    }

    /// An effect of `kind` ran with `outcome`.
    pub fn effect_outcome(&self, kind: &str, outcome: &str) {
        self.with(|s| {
            *s.effect_outcomes
                .entry((kind.to_string(), outcome.to_string()))
                .or_default() += 1
        });
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
