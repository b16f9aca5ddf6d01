//! The request budget of `md/_restrictions.md`: a bucket of units per credential that refills
//! over a window (45 units per 3 s), request weights (stock reports weigh 5), and at most 5
//! requests in flight per credential (error 1073 beyond).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Rate-limit settings of the emulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// Units in the bucket (`X-RateLimit-Limit`), 45 on the real API.
    pub units: u32,
    /// Time to refill the whole bucket (`X-Lognex-Retry-TimeInterval`), 3 s on the real API.
    pub window: Duration,
    /// Weight of an ordinary request made with a login/password or a user token: 4 since
    /// 2026-12-01 (2 from 2026-05-12, 3 from 2026-09-01; `md/_restrictions.md`).
    pub request_weight: u32,
    /// Weight of an ordinary request made with a published solution's token (1; 4 for a
    /// solution still in Draft or on moderation).
    pub solution_weight: u32,
    /// Weight of `report/stock/all` and `report/stock/bystore` with any credentials (5).
    pub stock_report_weight: u32,
    /// Requests in flight per credential before 1073 (5).
    pub max_parallel: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            units: 45,
            window: Duration::from_secs(3),
            request_weight: 4,
            solution_weight: 1,
            stock_report_weight: 5,
            max_parallel: 5,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Outcome of charging a request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Charge {
    /// Allowed; this many whole units remain.
    Allowed {
        /// Units left.
        remaining: u32,
    },
    /// Refused; the bucket holds enough units again after this long.
    Refused {
        /// Wait before retrying.
        retry_after: Duration,
    },
}

/// Buckets and in-flight counters per credential.
#[derive(Debug)]
pub struct Limiter {
    /// The settings; `None` disables limiting.
    pub config: Option<RateLimitConfig>,
    buckets: Mutex<HashMap<String, Bucket>>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// Decrements the in-flight counter of a credential when dropped.
#[derive(Debug)]
pub struct InFlight {
    key: String,
    map: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Limiter {
    /// A limiter with these settings (`None`: unlimited).
    pub fn new(config: Option<RateLimitConfig>) -> Limiter {
        Limiter {
            config,
            buckets: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Registers a request in flight; `None` when the credential already has the maximum.
    pub fn enter(&self, key: &str) -> Option<InFlight> {
        let max = self.config.as_ref().map_or(usize::MAX, |c| c.max_parallel);
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(InFlight {
            key: key.to_string(),
            map: self.in_flight.clone(),
        })
    }

    /// The weight of a request to `segs` (the path under `/api/remap/1.2`) made by a user
    /// (`solution`: with a published solution's token); 0 when limits are off.
    pub fn weight(&self, segs: &[&str], solution: bool) -> u32 {
        match (&self.config, segs) {
            (None, _) => 0,
            (Some(cfg), ["report", "stock", "all" | "bystore"]) => cfg.stock_report_weight,
            (Some(cfg), _) if solution => cfg.solution_weight,
            (Some(cfg), _) => cfg.request_weight,
        }
    }

    /// Charges `weight` units to the credential's bucket.
    pub fn charge(&self, key: &str, weight: u32) -> Charge {
        let Some(cfg) = &self.config else {
            return Charge::Allowed {
                remaining: u32::MAX,
            };
        };
        let capacity = f64::from(cfg.units);
        let rate = capacity / cfg.window.as_secs_f64().max(1e-6); // units per second
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.last = now;
        // A request heavier than the whole bucket would never pass: it costs the whole bucket.
        let w = f64::from(weight).min(capacity);
        if b.tokens + 1e-9 >= w {
            b.tokens -= w;
            Charge::Allowed {
                remaining: b.tokens.max(0.0).floor() as u32,
            }
        } else {
            let secs = (w - b.tokens) / rate;
            Charge::Refused {
                retry_after: Duration::try_from_secs_f64(secs)
                    .unwrap_or(cfg.window)
                    .max(Duration::from_millis(1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_when_empty_and_reports_wait() {
        let l = Limiter::new(Some(RateLimitConfig {
            units: 3,
            window: Duration::from_secs(3),
            ..RateLimitConfig::default()
        }));
        assert_eq!(l.charge("u", 1), Charge::Allowed { remaining: 2 });
        assert_eq!(l.charge("u", 2), Charge::Allowed { remaining: 0 });
        match l.charge("u", 1) {
            Charge::Refused { retry_after } => {
                assert!(retry_after <= Duration::from_secs(1) && retry_after > Duration::ZERO)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Another credential has its own bucket; a weight above the capacity costs it all.
        assert_eq!(l.charge("v", 5), Charge::Allowed { remaining: 0 });
    }

    #[test]
    fn weights_follow_the_credential_kind_and_the_endpoint() {
        let l = Limiter::new(Some(RateLimitConfig::default()));
        assert_eq!(l.weight(&["entity", "customerorder"], false), 4);
        assert_eq!(l.weight(&["entity", "customerorder"], true), 1);
        assert_eq!(l.weight(&["report", "stock", "all"], true), 5);
        assert_eq!(l.weight(&["report", "stock", "bystore"], false), 5);
        // The current-stock report is not in the weight-5 list.
        assert_eq!(l.weight(&["report", "stock", "all", "current"], false), 4);
        assert_eq!(Limiter::new(None).weight(&["entity", "store"], false), 0);
    }

    #[test]
    fn parallel_limit_counts_and_releases() {
        let l = Limiter::new(Some(RateLimitConfig {
            max_parallel: 2,
            ..RateLimitConfig::default()
        }));
        let a = l.enter("u");
        let b = l.enter("u");
        assert!(a.is_some() && b.is_some());
        assert!(l.enter("u").is_none());
        drop(a);
        assert!(l.enter("u").is_some());
    }
}
