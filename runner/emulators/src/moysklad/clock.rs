//! Emulated time: the account's wall-clock time (Moscow time on the real service) from the
//! system clock, or a fixed time set by a test.

use std::sync::{Arc, Mutex};

use chrono::{Duration, NaiveDateTime, Utc};
use chrono_tz::Tz;

/// The zone МойСклад writes its moments in.
pub const MOSCOW: Tz = chrono_tz::Europe::Moscow;

/// The emulator's clock. Cheap to clone; clones share the setting.
#[derive(Clone, Debug)]
pub struct Clock {
    frozen: Arc<Mutex<Option<NaiveDateTime>>>,
    zone: Tz,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(MOSCOW)
    }
}

impl Clock {
    /// A clock following the system clock, telling the time in `zone`.
    pub fn new(zone: Tz) -> Clock {
        Clock {
            frozen: Arc::new(Mutex::new(None)),
            zone,
        }
    }

    /// The zone it tells the time in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Now, in the account's zone (naive, as МойСклад writes datetimes).
    pub fn now(&self) -> NaiveDateTime {
        match *self.frozen.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) => t,
            None => Utc::now().with_timezone(&self.zone).naive_local(),
        }
    }

    /// Freezes the clock at `t` (`None`: follow the system clock again).
    pub fn set(&self, t: Option<NaiveDateTime>) {
        *self.frozen.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Moves a frozen clock forward (freezing it at now + `d` if it was running).
    pub fn advance(&self, d: std::time::Duration) {
        let now = self.now();
        let step = Duration::from_std(d).unwrap_or(Duration::zero());
        self.set(Some(now + step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_time_in_its_zone() {
        let utc = Utc::now().naive_utc();
        let moscow = Clock::default().now();
        let yekaterinburg = Clock::new(chrono_tz::Asia::Yekaterinburg).now();
        let hours = |t: NaiveDateTime| (t - utc).num_minutes() as f64 / 60.0;
        assert!((hours(moscow) - 3.0).abs() < 0.1, "{moscow} vs UTC {utc}");
        assert!(
            (hours(yekaterinburg) - 5.0).abs() < 0.1,
            "{yekaterinburg} vs UTC {utc}"
        );
    }
}
