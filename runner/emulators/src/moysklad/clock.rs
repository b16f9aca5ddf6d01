//! Emulated time: Moscow time from the system clock, or a fixed time set by a test.

use std::sync::{Arc, Mutex};

use chrono::{Duration, NaiveDateTime, Utc};

/// The emulator's clock. Cheap to clone; clones share the setting.
#[derive(Clone, Debug, Default)]
pub struct Clock(Arc<Mutex<Option<NaiveDateTime>>>);

impl Clock {
    /// Now, in Moscow time (UTC+3, naive, as МойСклад writes datetimes).
    pub fn now(&self) -> NaiveDateTime {
        match *self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) => t,
            None => Utc::now().naive_utc() + Duration::hours(3),
        }
    }

    /// Freezes the clock at `t` (`None`: follow the system clock again).
    pub fn set(&self, t: Option<NaiveDateTime>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Moves a frozen clock forward (freezing it at now + `d` if it was running).
    pub fn advance(&self, d: std::time::Duration) {
        let now = self.now();
        let step = Duration::from_std(d).unwrap_or(Duration::zero());
        self.set(Some(now + step));
    }
}
