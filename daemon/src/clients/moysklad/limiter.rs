//! Client-side request budget: a token bucket of units per window plus a cap on requests in
//! flight, both per credential (one [`RateLimiter`] per client and its clones).
//!
//! It starts from the documented budget (45 units per 3 s; since 2026-12-01 a request made
//! with a login/password or a user token weighs 4 units, one made with a published solution's
//! token 1, and the stock reports `report/stock/all` and `…/bystore` 5 with any credentials;
//! at most 5 requests in flight) and takes the stricter of that and what the server says:
//! `X-RateLimit-Limit` can only shrink the bucket, `X-Lognex-Retry-TimeInterval` can only
//! lengthen the window, `X-RateLimit-Remaining` caps the local units, and a 429 pauses every
//! request of the credential for the advertised `X-Lognex-Retry-After`.
//!
//! Work in the background (a stock pass, the reconciliation poll, the catalogue export) yields
//! to the worker: run it inside [`background`], and its requests wait while a worker request
//! waits, and leave one ordinary request's units in the bucket, so that polls at a short
//! interval cannot starve the work they find. Requests take their units in line (each class
//! in the order it asked: a stock report's 5 units are not overtaken for good by requests of
//! 4), and a background request that has waited two windows goes as a foreground one, so
//! background work is never starved either.
//!
//! At start-up the server's bucket may not be full (another process, or this one a moment
//! ago, used the credential), so the first request goes alone: the others wait for its answer
//! (and the server's view in its headers) before going side by side.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The budget the limiter starts from.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitConfig {
    /// Units per window (45).
    pub units: u32,
    /// Window (3 s).
    pub window: Duration,
    /// Weight of an ordinary request: 4 for a login/password or a user token (since
    /// 2026-12-01; it was 2 from May and 3 from September), 1 for a published solution's token
    /// ([`LimitConfig::solution`]).
    pub request_weight: u32,
    /// Weight of `report/stock/all` and `report/stock/bystore` (5).
    pub stock_report_weight: u32,
    /// Requests in flight at once (5 per user).
    pub max_in_flight: usize,
    /// Learn the bucket size, window and remaining units from response headers.
    pub adapt: bool,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            units: 45,
            window: Duration::from_secs(3),
            request_weight: LOGIN_WEIGHT,
            stock_report_weight: 5,
            max_in_flight: 5,
            adapt: true,
        }
    }
}

/// Weight of a request made with a login/password or a user token since 2026-12-01.
pub const LOGIN_WEIGHT: u32 = 4;
/// Weight of a request made with a published solution's token.
pub const SOLUTION_WEIGHT: u32 = 1;

impl LimitConfig {
    /// The budget of a published solution's (vendor app's) token: ordinary requests weigh 1.
    pub fn solution() -> LimitConfig {
        LimitConfig {
            request_weight: SOLUTION_WEIGHT,
            ..LimitConfig::default()
        }
    }
}

/// Runs `work` in the background: its МойСклад requests yield to foreground ones (see the
/// module docs), and its retailCRM requests leave part of that limit to the rest (see
/// [`crate::clients::background`]). Tasks spawned inside it are foreground again.
pub use crate::clients::background;

fn in_background() -> bool {
    crate::clients::is_background()
}

/// How often a request that is not first in line looks again.
const YIELD_POLL: Duration = Duration::from_millis(5);

/// How often the first request in line, waiting for its units, looks again at most.
const HEAD_RECHECK: Duration = Duration::from_millis(50);

/// A request waiting for its units, in line (see [`Bucket::first_in_line`]).
#[derive(Debug, Clone, Copy)]
struct Waiter {
    background: bool,
    since: Instant,
}

/// Keeps a request in line while it lives (it leaves the line when served, or given up).
struct InLine {
    bucket: Arc<Mutex<Bucket>>,
    ticket: u64,
}

impl InLine {
    fn new(bucket: &Arc<Mutex<Bucket>>, background: bool) -> InLine {
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = b.next_ticket;
        b.next_ticket += 1;
        b.line.insert(
            ticket,
            Waiter {
                background,
                since: Instant::now(),
            },
        );
        InLine {
            bucket: bucket.clone(),
            ticket,
        }
    }
}

impl Drop for InLine {
    fn drop(&mut self) {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        b.line.remove(&self.ticket);
    }
}

/// A view of the limiter's current beliefs (for diagnostics and tests).
#[derive(Clone, Debug, PartialEq)]
pub struct LimiterSnapshot {
    /// Bucket size in units.
    pub capacity: u32,
    /// Refill window.
    pub window: Duration,
    /// Units available now.
    pub tokens: f64,
    /// Whether a 429 pause is in effect.
    pub paused: bool,
    /// How many 429 pauses were taken so far.
    pub pauses: u64,
    /// Whether the first request has been answered (the start-up probe is over).
    pub calibrated: bool,
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    window: Duration,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    pauses: u64,
    /// The first request has been answered (or the limiter does not adapt).
    calibrated: bool,
    /// The first request is out (the others wait for its answer), since when.
    probing: bool,
    probe_started: Option<Instant>,
    /// Requests waiting for units, by ticket (the order they asked in).
    line: std::collections::BTreeMap<u64, Waiter>,
    next_ticket: u64,
    /// How long a background request waits before it goes as a foreground one, if not the
    /// window (tests).
    age: Option<Duration>,
}

impl Bucket {
    fn rate(&self) -> f64 {
        self.capacity / self.window.as_secs_f64().max(1e-3)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate()).min(self.capacity);
        self.last = now;
    }

    /// Whether a background request that asked at `since` has waited long enough to go as a
    /// foreground one: two windows (6 s). Foreground work that keeps the bucket empty delays
    /// background work by about that much, never for good.
    fn aged(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) >= self.age.unwrap_or(self.window * 2)
    }

    /// The request that goes next: foreground requests (and background ones waiting longer
    /// than [`Bucket::aged`]) before background ones, each class in the order they asked,
    /// so that a heavy request (a stock report, 5 units) is not overtaken for good by lighter
    /// ones that find their units first.
    fn first_in_line(&self, now: Instant) -> Option<u64> {
        self.line
            .iter()
            .min_by_key(|(ticket, w)| (w.background && !self.aged(w.since, now), **ticket))
            .map(|(ticket, _)| *ticket)
    }
}

/// The limiter shared by a client and its clones.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    config: LimitConfig,
    in_flight: Arc<Semaphore>,
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimiter {
    /// A limiter starting from `config`.
    pub fn new(config: LimitConfig) -> RateLimiter {
        let units = f64::from(config.units.max(1));
        RateLimiter {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            bucket: Arc::new(Mutex::new(Bucket {
                capacity: units,
                window: config.window.max(Duration::from_millis(1)),
                tokens: units,
                last: Instant::now(),
                paused_until: None,
                pauses: 0,
                calibrated: !config.adapt,
                probing: false,
                probe_started: None,
                line: std::collections::BTreeMap::new(),
                next_ticket: 0,
                age: None,
            })),
            config,
        }
    }

    /// The configuration it started from.
    pub fn config(&self) -> &LimitConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `weight` units and a slot in flight; the slot is held until the permit is
    /// dropped (drop it once the response is read).
    ///
    /// Requests take their units in line: foreground before background, each class in the
    /// order it asked; background work also leaves one ordinary request's units in the
    /// bucket. A background request that has waited two windows goes as a foreground one
    /// (in its place in line, ahead of those that asked after it): background work yields,
    /// but is never starved.
    pub async fn acquire(&self, weight: u32) -> Permit {
        let background = in_background();
        let line = InLine::new(&self.bucket, background);
        let probe = loop {
            let wait = {
                let mut b = self.lock();
                let now = Instant::now();
                b.refill(now);
                match b.paused_until {
                    Some(until) if until > now => until - now,
                    // The others wait for the probe's answer — but a probe that hangs must not
                    // hold everything else back: past PROBE_MAX they go on the documented
                    // budget (stricter than anything a header may grant).
                    _ if !b.calibrated
                        && b.probing
                        && b.probe_started.is_some_and(|t| now - t < PROBE_MAX) =>
                    {
                        PROBE_POLL
                    }
                    _ if b.first_in_line(now) != Some(line.ticket) => YIELD_POLL,
                    _ => {
                        b.paused_until = None;
                        // A request heavier than the bucket would wait forever: it costs the
                        // whole bucket instead.
                        let w = f64::from(weight).min(b.capacity);
                        // Background work leaves one ordinary request's units for the
                        // foreground (until it has waited long enough to go as one).
                        let since = b.line.get(&line.ticket).map_or(now, |w| w.since);
                        let reserve = if background && !b.aged(since, now) {
                            f64::from(self.config.request_weight).min(b.capacity - w)
                        } else {
                            0.0
                        };
                        if b.tokens + 1e-9 >= w + reserve {
                            b.tokens -= w;
                            let probe = !b.calibrated && !b.probing;
                            if probe {
                                b.probing = true;
                                b.probe_started = Some(now);
                            }
                            break probe;
                        }
                        // Looked at again at least this often: the line, the reserve and the
                        // bucket (a response's headers) may change meanwhile.
                        Duration::from_secs_f64((w + reserve - b.tokens) / b.rate())
                            .min(HEAD_RECHECK)
                    }
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        };
        // Out of line: the next request may take its units while this one waits for a slot.
        drop(line);
        // The semaphore is never closed, so this only fails if that invariant is broken; the
        // caller then proceeds without a slot rather than failing the request.
        let slot = self.in_flight.clone().acquire_owned().await.ok();
        Permit {
            _slot: slot,
            probe: probe.then(|| self.bucket.clone()),
        }
    }

    /// Learns from the rate-limit headers of a response.
    pub fn observe(&self, headers: &HeaderMap) {
        if !self.config.adapt {
            return;
        }
        let num = |name: &str| -> Option<f64> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|x| x.is_finite())
        };
        let mut b = self.lock();
        b.refill(Instant::now());
        if let Some(limit) = num("X-RateLimit-Limit").filter(|l| *l >= 1.0) {
            // The stricter of the documented budget and the advertised one.
            b.capacity = limit.min(f64::from(self.config.units.max(1)));
            b.tokens = b.tokens.min(b.capacity);
        }
        if let Some(window) = num("X-Lognex-Retry-TimeInterval")
            .filter(|ms| *ms >= 1.0)
            .map(|ms| {
                Duration::try_from_secs_f64(ms / 1000.0).map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
            })
        {
            // A longer window is a slower refill: take the stricter one.
            b.window = window.max(self.config.window).min(MAX_WAIT);
        }
        if let Some(remaining) = num("X-RateLimit-Remaining").filter(|r| *r >= 0.0) {
            // The server saw every request of this credential (ours and other processes');
            // never believe we have more than it says.
            b.tokens = b.tokens.min(remaining);
        }
    }

    /// Pauses every request of the credential for `d` (after a 429).
    pub fn pause(&self, d: Duration) {
        let mut b = self.lock();
        let until = Instant::now() + d;
        b.paused_until = Some(b.paused_until.map_or(until, |u| u.max(until)));
        b.tokens = 0.0;
        b.last = Instant::now();
        b.pauses += 1;
    }

    /// The limiter's current beliefs.
    pub fn snapshot(&self) -> LimiterSnapshot {
        let mut b = self.lock();
        let now = Instant::now();
        b.refill(now);
        LimiterSnapshot {
            capacity: b.capacity.round() as u32,
            window: b.window,
            tokens: b.tokens,
            paused: b.paused_until.is_some_and(|u| u > now),
            pauses: b.pauses,
            calibrated: b.calibrated,
        }
    }
}

/// How often a request waiting for the start-up probe looks again.
const PROBE_POLL: Duration = Duration::from_millis(5);

/// How long the others wait for the start-up probe's answer at most.
const PROBE_MAX: Duration = Duration::from_millis(250);

/// A request's right to go: its slot in flight and, for the start-up probe, the duty to let
/// the others go when it is done (dropped once its answer, and its headers, are read).
#[derive(Debug)]
pub struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
    probe: Option<Arc<Mutex<Bucket>>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(bucket) = &self.probe {
            let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
            b.probing = false;
            // Answered, with or without rate-limit headers: a server that sends none has
            // nothing more to tell, so requests need not stay one at a time.
            b.calibrated = true;
        }
    }
}

/// The longest wait or window taken from a header; anything longer is treated as this.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Parses the advertised wait of a 429: `X-Lognex-Retry-After` (ms), else `Retry-After` (s).
/// Values above [`MAX_WAIT`] are capped; garbage is ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite() && *x > 0.0)
    };
    let secs = get("X-Lognex-Retry-After")
        .map(|ms| ms / 1000.0)
        .or_else(|| get("Retry-After"))?;
    Some(Duration::try_from_secs_f64(secs).map_or(MAX_WAIT, |d| d.min(MAX_WAIT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[tokio::test]
    async fn adapts_capacity_window_and_remaining_from_headers() {
        let l = RateLimiter::new(LimitConfig::default());
        l.observe(&headers(&[
            ("X-RateLimit-Limit", "10"),
            ("X-Lognex-Retry-TimeInterval", "1000"),
            ("X-RateLimit-Remaining", "3"),
        ]));
        let s = l.snapshot();
        assert_eq!(s.capacity, 10);
        // A shorter advertised window would refill faster than documented: not taken.
        assert_eq!(s.window, Duration::from_secs(3));
        assert!(s.tokens <= 4.0, "tokens capped by Remaining: {}", s.tokens);
        l.observe(&headers(&[
            ("X-RateLimit-Limit", "90"),
            ("X-Lognex-Retry-TimeInterval", "6000"),
        ]));
        let s = l.snapshot();
        assert_eq!(s.capacity, 45, "never above the documented 45 units");
        assert_eq!(s.window, Duration::from_secs(6));
    }

    #[test]
    fn the_default_budget_is_the_2026_login_weight() {
        assert_eq!(LimitConfig::default().request_weight, 4);
        assert_eq!(LimitConfig::default().stock_report_weight, 5);
        assert_eq!(LimitConfig::solution().request_weight, 1);
    }

    #[tokio::test]
    async fn the_first_request_goes_alone() {
        let l = RateLimiter::new(LimitConfig::default());
        let first = l.acquire(4).await;
        assert!(!l.snapshot().calibrated);
        // A second request waits for the first one's answer…
        let waiting = tokio::time::timeout(Duration::from_millis(50), l.acquire(4)).await;
        assert!(
            waiting.is_err(),
            "a second request went before the first was answered"
        );
        // …which tells the server's view; then requests go side by side.
        l.observe(&headers(&[
            ("X-RateLimit-Limit", "45"),
            ("X-RateLimit-Remaining", "41"),
        ]));
        drop(first);
        assert!(l.snapshot().calibrated);
        let second = l.acquire(4).await;
        let third = tokio::time::timeout(Duration::from_millis(50), l.acquire(4)).await;
        assert!(
            third.is_ok(),
            "requests after the first must not wait for each other"
        );
        drop(second);
    }

    #[tokio::test]
    async fn absurd_headers_do_not_panic() {
        let l = RateLimiter::new(LimitConfig::default());
        l.observe(&headers(&[
            ("X-RateLimit-Limit", "inf"),
            ("X-Lognex-Retry-TimeInterval", "1e300"),
            ("X-RateLimit-Remaining", "NaN"),
        ]));
        let s = l.snapshot();
        assert_eq!(s.window, MAX_WAIT);
        assert_eq!(s.capacity, 45);
    }

    #[tokio::test]
    async fn ignores_headers_when_not_adapting() {
        let l = RateLimiter::new(LimitConfig {
            adapt: false,
            ..LimitConfig::default()
        });
        l.observe(&headers(&[("X-RateLimit-Limit", "10")]));
        assert_eq!(l.snapshot().capacity, 45);
    }

    /// A poll waiting for units since before the worker asked must still let the worker go
    /// first: otherwise polls at a short interval take every unit and the work they find
    /// never runs.
    #[tokio::test]
    async fn a_waiting_foreground_request_goes_before_background_ones() {
        let l = RateLimiter::new(LimitConfig {
            units: 4,
            window: Duration::from_millis(400),
            adapt: false,
            ..LimitConfig::default()
        });
        drop(l.acquire(4).await);
        let order = Arc::new(Mutex::new(Vec::new()));
        let bg = {
            let (l, order) = (l.clone(), order.clone());
            // A light request: its units are there well before the worker's.
            tokio::spawn(background(async move {
                drop(l.acquire(2).await);
                order
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push("background");
            }))
        };
        // The poll has waited a quarter of the refill when the worker asks.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(l.acquire(4).await);
        order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push("foreground");
        let _ = bg.await;
        assert_eq!(
            *order.lock().unwrap_or_else(|e| e.into_inner()),
            vec!["foreground", "background"]
        );
    }

    #[tokio::test]
    async fn foreground_requests_do_not_wait_for_background_reserve() {
        let l = RateLimiter::new(LimitConfig {
            units: 8,
            window: Duration::from_secs(3600),
            adapt: false,
            ..LimitConfig::default()
        });
        // 8 units: the background leaves 4 of them, the foreground may take all.
        let bg = tokio::time::timeout(Duration::from_millis(50), background(l.acquire(4))).await;
        assert!(bg.is_ok(), "background went with a full bucket");
        let bg = tokio::time::timeout(Duration::from_millis(50), background(l.acquire(4))).await;
        assert!(bg.is_err(), "background took the foreground's reserve");
        let fg = tokio::time::timeout(Duration::from_millis(50), l.acquire(4)).await;
        assert!(fg.is_ok(), "the foreground could not use its reserve");
    }

    /// How many of `total` foreground requests (three tasks asking one after another, so
    /// that some always wait) were served when a background request of `weight` was.
    async fn foreground_served_before_background(
        l: &RateLimiter,
        total: usize,
        weight: u32,
        foreground_in_background: bool,
    ) -> usize {
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (l, served) = (l.clone(), served.clone());
                let work = async move {
                    for _ in 0..total / 3 {
                        drop(l.acquire(4).await);
                        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                };
                match foreground_in_background {
                    true => tokio::spawn(background(work)),
                    false => tokio::spawn(work),
                }
            })
            .collect();
        // The others are under way (and waiting) before the background request asks.
        while served.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(background(l.acquire(weight)).await);
        let at = served.load(std::sync::atomic::Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        at
    }

    /// Background work yields, but is never starved: with foreground requests always waiting
    /// (the bucket never fills), a background request goes once it has waited two windows,
    /// long before the foreground work is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_is_served_while_foreground_requests_keep_waiting() {
        let l = RateLimiter::new(LimitConfig {
            units: 8,
            window: Duration::from_millis(100),
            adapt: false,
            ..LimitConfig::default()
        });
        // 20 requests of 4 units a second: 60 take 3 s; the background request waits two
        // windows (0.2 s) and then its turn.
        let total = 60;
        let at = foreground_served_before_background(&l, total, 5, false).await;
        assert!(
            at <= total / 2,
            "the background request went after {at} of {total} foreground requests"
        );
    }

    /// A stock report (5 units) among background requests of 4 (a reconciliation poll asking
    /// without pause) gets its units in its turn: lighter requests that find their units
    /// first do not overtake it for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heavy_background_request_is_not_overtaken_for_good_by_lighter_ones() {
        // 80 units a second: 60 requests of 4 take 3 s.
        let l = RateLimiter::new(LimitConfig {
            units: 12,
            window: Duration::from_millis(150),
            adapt: false,
            ..LimitConfig::default()
        });
        // Ageing plays no part (a minute), only the order in line.
        l.lock().age = Some(Duration::from_secs(60));
        let total = 60;
        let at = foreground_served_before_background(&l, total, 5, true).await;
        assert!(
            at <= total / 2,
            "the stock report went after {at} of {total} lighter background requests"
        );
    }

    #[tokio::test]
    async fn pause_blocks_until_elapsed() {
        let l = RateLimiter::new(LimitConfig::default());
        l.pause(Duration::from_millis(30));
        assert!(l.snapshot().paused);
        let start = Instant::now();
        let _p = l.acquire(1).await;
        assert!(start.elapsed() >= Duration::from_millis(25));
        assert_eq!(l.snapshot().pauses, 1);
    }

    #[test]
    fn retry_after_prefers_lognex_millis() {
        assert_eq!(
            retry_after(&headers(&[
                ("X-Lognex-Retry-After", "1500"),
                ("Retry-After", "9")
            ])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("X-Lognex-Retry-After", "0"),
                ("Retry-After", "2")
            ])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
        assert_eq!(
            retry_after(&headers(&[("X-Lognex-Retry-After", "inf")])),
            None
        );
        assert_eq!(
            retry_after(&headers(&[("X-Lognex-Retry-After", "1e300")])),
            Some(MAX_WAIT)
        );
    }
}
