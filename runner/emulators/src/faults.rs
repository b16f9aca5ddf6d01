//! Fault injection for the emulators: a runtime-switchable tower layer shared by both.
//!
//! Real APIs are slow, rate-limit, fail with 5xx and drop connections, sometimes *after* they
//! have committed a write. The runner must survive all of that, so both emulators put a
//! [`FaultLayer`] in front of their routes and tests (or `skladsync emulate`) switch faults on
//! and off while the emulator is running.
//!
//! # Model
//!
//! * A [`Faults`] handle is cheap to clone (an `Arc` inside). Every clone controls the same
//!   set of plans, so a test keeps one clone and the emulator's router holds another.
//! * A [`FaultPlan`] says **what** goes wrong ([`Fault`]), **when** ([`Trigger`]: always, every
//!   Nth matching request, or with a seeded pseudo-random probability), and **to which
//!   requests** (an optional path prefix, optionally only write methods, optionally only
//!   requests whose body holds a text), optionally at most `times` times.
//! * Several plans may be active. For each request, every plan whose filter matches counts the
//!   request and decides whether it fires. All firing [`Fault::Latency`] plans add their delay;
//!   the first firing plan of any other kind (in insertion order) decides the outcome.
//!
//! # Faults
//!
//! | [`Fault`] | the handler runs? | what the client sees |
//! |---|---|---|
//! | `Latency` | yes, after the delay | the normal response, late |
//! | `TooManyRequests` | no | a rate-limit response rendered by the emulator's [`Renderer`] |
//! | `ServerError` | no | a 5xx response rendered by the emulator's [`Renderer`] |
//! | `Refused` | no | a 4xx refusal (never 401, 403 or 429) rendered by the emulator's [`Renderer`]: what a service answers a request it will not accept as sent |
//! | `DropConnection` | no | no usable response: the connection is aborted |
//! | `CommitThenDrop` | **yes**, and its state change is kept | no usable response |
//!
//! "No usable response" is implemented as a response whose body fails on its first poll: hyper
//! then aborts the connection, and an HTTP client reports a transport error (connection closed
//! before the message completed, or a body error if the head was already flushed). Either way
//! the client never receives a complete response.
//!
//! # Using it in an emulator
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use skladsync_emulators::faults::{Fault, FaultPlan, Faults, Trigger};
//! use std::time::Duration;
//!
//! let faults = Faults::new();
//! let app: Router = Router::new()
//!     .route("/api/v5/orders", get(|| async { "[]" }))
//!     // The emulator chooses how an injected 429/5xx looks on the wire:
//!     .layer(faults.layer());
//!
//! // Later, from a test: every 3rd write under /api/v5/orders commits, then loses its response.
//! faults.add(
//!     FaultPlan::new(Fault::CommitThenDrop)
//!         .trigger(Trigger::EveryNth(3))
//!         .path_prefix("/api/v5/orders")
//!         .writes_only(),
//! );
//! // The next two requests (any path) answer 503.
//! faults.add(FaultPlan::new(Fault::ServerError { status: 503 }).times(2));
//! // A 20% chance of 50 ms extra latency, reproducible with the seed.
//! faults.add(
//!     FaultPlan::new(Fault::Latency { delay: Duration::from_millis(50) })
//!         .trigger(Trigger::Random { probability: 0.2, seed: 7 }),
//! );
//! faults.clear();
//! ```
//!
//! The layer must wrap the routes whose handlers should be skipped or run (apply it with
//! `Router::layer`, so it sees the request before routing). Authentication and rate limiting
//! of the emulator itself may sit inside or outside it; put them inside if an injected fault
//! should not consume the emulated budget.
//!
//! To render injected 429 and 5xx responses in the emulated API's own shape, pass a
//! [`Renderer`] with [`Faults::layer_with`]; [`default_renderer`] answers with a small JSON body
//! and a `Retry-After` header in whole seconds.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// What goes wrong when a plan fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Delay the request by a fixed time, then handle it normally.
    Latency {
        /// The added delay (serialized as milliseconds, `delay_ms`).
        #[serde(rename = "delay_ms", with = "millis")]
        delay: Duration,
    },
    /// Answer with a rate-limit rejection without running the handler.
    TooManyRequests {
        /// How long the client is told to wait (serialized as `retry_after_ms`).
        #[serde(rename = "retry_after_ms", with = "millis")]
        retry_after: Duration,
    },
    /// Answer with this 5xx status without running the handler.
    ServerError {
        /// The HTTP status; values outside 500..=599 are treated as 500.
        status: u16,
    },
    /// Answer with this 4xx status without running the handler: a refusal a client does not
    /// retry (the request as sent is not accepted).
    Refused {
        /// The HTTP status; values outside 400..=499 (and 401, 403, 429, which mean other
        /// things) are treated as 400.
        status: u16,
    },
    /// Abort the connection without running the handler: the client gets no response.
    DropConnection,
    /// Run the handler (its state change is kept), then abort the connection instead of
    /// sending its response.
    CommitThenDrop,
}

/// When a plan fires, counted over the requests that match its filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// Every matching request.
    Always,
    /// The Nth, 2Nth, 3Nth… matching request (1-based). `EveryNth(1)` is the same as
    /// `Always`; `EveryNth(0)` never fires.
    EveryNth(u64),
    /// The Nth matching request (1-based) and every one after it (bound it with
    /// [`FaultPlan::times`]: `FromNth(3)` with `times(4)` fails the 3rd to the 6th).
    /// `FromNth(0)` is the same as `FromNth(1)`.
    FromNth(u64),
    /// Each matching request independently with this probability (clamped to 0..=1), drawn
    /// from a pseudo-random sequence seeded by `seed`: the same seed and the same request
    /// order give the same faults.
    Random {
        /// Probability of firing, 0.0..=1.0.
        probability: f64,
        /// Seed of the plan's pseudo-random sequence.
        seed: u64,
    },
}

/// One fault with its trigger and filter. Build it with [`FaultPlan::new`] and the builder
/// methods; it is also (de)serializable, e.g. from a `skladsync emulate` option file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// What goes wrong.
    pub fault: Fault,
    /// When it goes wrong.
    #[serde(default = "always")]
    pub trigger: Trigger,
    /// Only requests whose path starts with this prefix are counted and affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Only write requests (POST, PUT, PATCH, DELETE) are counted and affected.
    #[serde(default)]
    pub writes_only: bool,
    /// Fire at most this many times; `None` means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Only requests whose body, as sent (a form still URL-encoded), holds this text are
    /// counted and affected: a refusal of one record's writes, whatever comes before or
    /// after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

fn always() -> Trigger {
    Trigger::Always
}

impl FaultPlan {
    /// A plan that injects `fault` on every request, without limit.
    pub fn new(fault: Fault) -> Self {
        FaultPlan {
            fault,
            trigger: Trigger::Always,
            path_prefix: None,
            writes_only: false,
            times: None,
            body_contains: None,
        }
    }

    /// Sets when the plan fires.
    #[must_use]
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Restricts the plan to request paths starting with `prefix` (e.g.
    /// `"/api/remap/1.2/entity/customerorder"`).
    #[must_use]
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Restricts the plan to write methods (POST, PUT, PATCH, DELETE).
    #[must_use]
    pub fn writes_only(mut self) -> Self {
        self.writes_only = true;
        self
    }

    /// Lets the plan fire at most `n` times.
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Restricts the plan to requests whose body holds `text` (as sent: a form's fields are
    /// still URL-encoded).
    #[must_use]
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    fn matches(&self, method: &Method, path: &str, body: Option<&[u8]>) -> bool {
        if self.writes_only && !is_write(method) {
            return false;
        }
        if let Some(text) = &self.body_contains {
            let text = text.as_bytes();
            let held =
                body.is_some_and(|b| text.is_empty() || b.windows(text.len()).any(|w| w == text));
            if !held {
                return false;
            }
        }
        match &self.path_prefix {
            Some(prefix) => path.starts_with(prefix.as_str()),
            None => true,
        }
    }
}

/// Whether `method` changes state (POST, PUT, PATCH, DELETE).
pub fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// A plan with its runtime counters.
#[derive(Debug)]
struct ActivePlan {
    id: PlanId,
    plan: FaultPlan,
    /// Matching requests seen so far.
    seen: u64,
    /// Times the plan fired.
    fired: u64,
    /// State of the plan's pseudo-random sequence.
    rng: u64,
}

impl ActivePlan {
    fn new(id: PlanId, plan: FaultPlan) -> Self {
        let rng = match plan.trigger {
            Trigger::Random { seed, .. } => seed,
            _ => 0,
        };
        ActivePlan {
            id,
            plan,
            seen: 0,
            fired: 0,
            rng,
        }
    }

    /// Counts a matching request and decides whether the plan fires for it.
    fn decide(&mut self) -> bool {
        self.seen += 1;
        if let Some(limit) = self.plan.times {
            if self.fired >= limit {
                return false;
            }
        }
        let fire = match self.plan.trigger {
            Trigger::Always => true,
            Trigger::EveryNth(0) => false,
            Trigger::EveryNth(n) => self.seen.is_multiple_of(n),
            Trigger::FromNth(n) => self.seen >= n,
            Trigger::Random { probability, .. } => {
                let draw = splitmix64(&mut self.rng);
                // 53 random bits mapped to [0, 1).
                let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
                unit < probability.clamp(0.0, 1.0)
            }
        };
        if fire {
            self.fired += 1;
        }
        fire
    }
}

/// SplitMix64: a tiny, well-distributed PRNG; enough for reproducible fault schedules.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Default)]
struct Inner {
    plans: Vec<ActivePlan>,
    injected: u64,
    next_id: u64,
}

/// Identifies a plan added with [`Faults::add`], to remove it later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanId(u64);

/// The runtime-switchable fault switch shared by an emulator and whoever controls it.
///
/// Cloning is cheap; all clones share the plans and counters.
#[derive(Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("plans", &self.plans())
            .field("injected", &self.injected())
            .finish()
    }
}

/// The outcome the layer decided for one request.
#[derive(Clone, Debug, PartialEq)]
struct Decision {
    delay: Duration,
    outcome: Option<Fault>,
}

impl Faults {
    /// A switch with no plans: every request passes untouched.
    pub fn new() -> Self {
        Faults::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the plans half-updated in a way that
        // matters for fault injection, so a poisoned lock is simply taken over.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a plan after the existing ones and returns its id.
    pub fn add(&self, plan: FaultPlan) -> PlanId {
        let mut inner = self.lock();
        let id = PlanId(inner.next_id);
        inner.next_id += 1;
        inner.plans.push(ActivePlan::new(id, plan));
        id
    }

    /// Replaces all plans with this one (counters start from zero) and returns its id.
    pub fn set(&self, plan: FaultPlan) -> PlanId {
        self.clear();
        self.add(plan)
    }

    /// Removes one plan; returns whether it was active.
    pub fn remove(&self, id: PlanId) -> bool {
        let mut inner = self.lock();
        let before = inner.plans.len();
        inner.plans.retain(|p| p.id != id);
        inner.plans.len() != before
    }

    /// Removes every plan: requests pass untouched again. The injected count is kept.
    pub fn clear(&self) {
        self.lock().plans.clear();
    }

    /// The active plans, in order.
    pub fn plans(&self) -> Vec<FaultPlan> {
        self.lock().plans.iter().map(|p| p.plan.clone()).collect()
    }

    /// How many requests got a fault (latency included) since this switch was created.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// How many times the plan `id` fired, or `None` if it is not active.
    pub fn fired(&self, id: PlanId) -> Option<u64> {
        self.lock()
            .plans
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.fired)
    }

    /// A layer that injects this switch's faults, rendering 429/5xx with [`default_renderer`].
    pub fn layer(&self) -> FaultLayer {
        self.layer_with(Arc::new(default_renderer))
    }

    /// A layer that injects this switch's faults, rendering 429/5xx with `renderer`.
    pub fn layer_with(&self, renderer: Renderer) -> FaultLayer {
        FaultLayer {
            faults: self.clone(),
            renderer,
        }
    }

    /// Whether some plan looks at request bodies (they are then read before the decision).
    fn reads_bodies(&self) -> bool {
        self.lock()
            .plans
            .iter()
            .any(|p| p.plan.body_contains.is_some())
    }

    fn decide(&self, method: &Method, path: &str, body: Option<&[u8]>) -> Decision {
        let mut inner = self.lock();
        let mut delay = Duration::ZERO;
        let mut outcome = None;
        let mut any = false;
        for plan in inner.plans.iter_mut() {
            if !plan.plan.matches(method, path, body) || !plan.decide() {
                continue;
            }
            any = true;
            match &plan.plan.fault {
                Fault::Latency { delay: d } => delay += *d,
                other => {
                    if outcome.is_none() {
                        outcome = Some(other.clone());
                    }
                }
            }
        }
        if any {
            inner.injected += 1;
        }
        Decision { delay, outcome }
    }
}

/// An injected rejection the emulator renders in its API's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Rate limited; the client should wait `retry_after`.
    TooManyRequests {
        /// Advertised wait.
        retry_after: Duration,
    },
    /// A server error with this status (500..=599).
    ServerError {
        /// The status to answer with.
        status: StatusCode,
    },
    /// A refusal with this status (400..=499, never 401, 403 or 429).
    Refused {
        /// The status to answer with.
        status: StatusCode,
    },
}

/// Renders a [`Rejection`] as a response. Each emulator passes one that mimics its API.
pub type Renderer = Arc<dyn Fn(&Rejection) -> Response + Send + Sync>;

/// A neutral rendering: JSON `{"error": "..."}`; 429 carries `Retry-After` in whole seconds
/// (rounded up).
pub fn default_renderer(rejection: &Rejection) -> Response {
    match rejection {
        Rejection::TooManyRequests { retry_after } => {
            let secs = retry_after.as_millis().div_ceil(1000);
            let mut resp = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(serde_json::json!({"error": "injected fault: too many requests"})),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Rejection::ServerError { status } => (
            *status,
            axum::Json(serde_json::json!({"error": "injected fault: server error"})),
        )
            .into_response(),
        Rejection::Refused { status } => (
            *status,
            axum::Json(serde_json::json!({"error": "injected fault: refused"})),
        )
            .into_response(),
    }
}

/// A response that never completes: its body fails on the first poll, so the server aborts
/// the connection and the client gets no usable response.
pub fn aborted_response() -> Response {
    let mut resp = Response::new(Body::new(FailingBody));
    // No Content-Length: hyper must stream, and the stream fails.
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A body whose first frame is an error.
struct FailingBody;

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected fault: connection dropped",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

/// The tower layer made by [`Faults::layer`]; wrap a router with it.
#[derive(Clone)]
pub struct FaultLayer {
    faults: Faults,
    renderer: Renderer,
}

impl fmt::Debug for FaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            inner,
            faults: self.faults.clone(),
            renderer: self.renderer.clone(),
        }
    }
}

/// The service made by [`FaultLayer`].
#[derive(Clone)]
pub struct FaultService<S> {
    inner: S,
    faults: Faults,
    renderer: Renderer,
}

impl<S> fmt::Debug for FaultService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultService")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl<S> tower::Service<Request<Body>> for FaultService<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // Decided now, unless a plan looks at bodies: the body is read first then.
        let reads_bodies = self.faults.reads_bodies();
        let decided =
            (!reads_bodies).then(|| self.faults.decide(req.method(), req.uri().path(), None));
        let faults = self.faults.clone();
        // Take the service that was driven to readiness and leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let renderer = self.renderer.clone();
        Box::pin(async move {
            let (req, decision) = match decided {
                Some(d) => (req, d),
                None => {
                    let (parts, body) = req.into_parts();
                    // A body that cannot be read is seen as empty by the plans; the handler
                    // gets what was read.
                    let bytes = axum::body::to_bytes(body, usize::MAX)
                        .await
                        .unwrap_or_default();
                    let d = faults.decide(&parts.method, parts.uri.path(), Some(&bytes));
                    (Request::from_parts(parts, Body::from(bytes)), d)
                }
            };
            if !decision.delay.is_zero() {
                tokio::time::sleep(decision.delay).await;
            }
            match decision.outcome {
                None => inner.call(req).await,
                Some(Fault::Latency { .. }) => inner.call(req).await,
                Some(Fault::TooManyRequests { retry_after }) => {
                    Ok(renderer(&Rejection::TooManyRequests { retry_after }))
                }
                Some(Fault::ServerError { status }) => {
                    let status = StatusCode::from_u16(status)
                        .ok()
                        .filter(|s| s.is_server_error())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    Ok(renderer(&Rejection::ServerError { status }))
                }
                Some(Fault::Refused { status }) => {
                    let status = StatusCode::from_u16(status)
                        .ok()
                        .filter(|s| {
                            s.is_client_error()
                                && ![
                                    StatusCode::UNAUTHORIZED,
                                    StatusCode::FORBIDDEN,
                                    StatusCode::TOO_MANY_REQUESTS,
                                ]
                                .contains(s)
                        })
                        .unwrap_or(StatusCode::BAD_REQUEST);
                    Ok(renderer(&Rejection::Refused { status }))
                }
                Some(Fault::DropConnection) => Ok(aborted_response()),
                Some(Fault::CommitThenDrop) => {
                    // Run the handler to completion so its state change is kept, then throw
                    // its response away.
                    let _committed = inner.call(req).await;
                    Ok(aborted_response())
                }
            }
        })
    }
}

/// Serde helper: a `Duration` as integer milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(plan: FaultPlan, method: Method, path: &str, n: usize) -> Vec<bool> {
        let faults = Faults::new();
        faults.add(plan);
        (0..n)
            .map(|_| faults.decide(&method, path, None).outcome.is_some())
            .collect()
    }

    #[test]
    fn every_nth_fires_on_multiples() {
        let got = fires(
            FaultPlan::new(Fault::DropConnection).trigger(Trigger::EveryNth(3)),
            Method::GET,
            "/x",
            7,
        );
        assert_eq!(got, [false, false, true, false, false, true, false]);
    }

    #[test]
    fn from_nth_fires_from_then_on_as_many_times_as_allowed() {
        let got = fires(
            FaultPlan::new(Fault::DropConnection)
                .trigger(Trigger::FromNth(3))
                .times(3),
            Method::GET,
            "/x",
            7,
        );
        assert_eq!(got, [false, false, true, true, true, false, false]);
    }

    #[test]
    fn every_zeroth_never_fires() {
        let got = fires(
            FaultPlan::new(Fault::DropConnection).trigger(Trigger::EveryNth(0)),
            Method::GET,
            "/x",
            4,
        );
        assert_eq!(got, [false; 4]);
    }

    #[test]
    fn times_limits_firing() {
        let got = fires(
            FaultPlan::new(Fault::ServerError { status: 503 }).times(2),
            Method::GET,
            "/x",
            4,
        );
        assert_eq!(got, [true, true, false, false]);
    }

    #[test]
    fn path_prefix_and_writes_only_filter_and_count_only_matches() {
        let faults = Faults::new();
        faults.add(
            FaultPlan::new(Fault::DropConnection)
                .trigger(Trigger::EveryNth(2))
                .path_prefix("/api/orders")
                .writes_only(),
        );
        // Non-matching requests are neither affected nor counted.
        assert!(faults
            .decide(&Method::GET, "/api/orders", None)
            .outcome
            .is_none());
        assert!(faults
            .decide(&Method::POST, "/api/other", None)
            .outcome
            .is_none());
        assert!(faults
            .decide(&Method::POST, "/api/orders", None)
            .outcome
            .is_none());
        assert!(faults
            .decide(&Method::GET, "/api/orders/1", None)
            .outcome
            .is_none());
        assert!(faults
            .decide(&Method::DELETE, "/api/orders/1", None)
            .outcome
            .is_some());
        assert_eq!(faults.injected(), 1);
    }

    #[test]
    fn a_body_filter_counts_and_affects_only_requests_whose_body_holds_the_text() {
        let faults = Faults::new();
        assert!(!faults.reads_bodies());
        let id = faults.add(
            FaultPlan::new(Fault::Refused { status: 400 })
                .path_prefix("/api/v5/store")
                .body_contains("%22xmlId%22%3A%22p2%22"),
        );
        assert!(faults.reads_bodies());
        let form = |x: &str| format!("offers=%5B%7B%22xmlId%22%3A%22{x}%22%7D%5D");
        let post = |body: Option<&[u8]>| {
            faults
                .decide(&Method::POST, "/api/v5/store/inventories/upload", body)
                .outcome
        };
        assert_eq!(post(Some(form("p1").as_bytes())), None);
        assert_eq!(post(None), None, "no body read: no match");
        assert_eq!(
            post(Some(form("p2").as_bytes())),
            Some(Fault::Refused { status: 400 })
        );
        assert_eq!(post(Some(form("p3").as_bytes())), None);
        assert_eq!(faults.fired(id), Some(1));
    }

    #[test]
    fn random_is_deterministic_per_seed_and_near_its_probability() {
        let plan = |seed| {
            FaultPlan::new(Fault::DropConnection).trigger(Trigger::Random {
                probability: 0.25,
                seed,
            })
        };
        let a = fires(plan(42), Method::GET, "/", 2000);
        let b = fires(plan(42), Method::GET, "/", 2000);
        let c = fires(plan(43), Method::GET, "/", 2000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let hits = a.iter().filter(|x| **x).count();
        assert!((400..600).contains(&hits), "{hits} hits of 2000 at p=0.25");
        assert_eq!(
            fires(
                FaultPlan::new(Fault::DropConnection).trigger(Trigger::Random {
                    probability: 0.0,
                    seed: 1
                }),
                Method::GET,
                "/",
                100
            ),
            vec![false; 100]
        );
    }

    #[test]
    fn latencies_add_up_and_first_terminal_fault_wins() {
        let faults = Faults::new();
        faults.add(FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(5),
        }));
        faults.add(FaultPlan::new(Fault::ServerError { status: 502 }));
        faults.add(FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(7),
        }));
        faults.add(FaultPlan::new(Fault::DropConnection));
        let d = faults.decide(&Method::GET, "/", None);
        assert_eq!(d.delay, Duration::from_millis(12));
        assert_eq!(d.outcome, Some(Fault::ServerError { status: 502 }));
    }

    #[test]
    fn remove_set_clear_and_fired() {
        let faults = Faults::new();
        let a = faults.add(FaultPlan::new(Fault::DropConnection).times(1));
        let b = faults.add(FaultPlan::new(Fault::CommitThenDrop));
        faults.decide(&Method::GET, "/", None);
        assert_eq!(faults.fired(a), Some(1));
        assert_eq!(faults.fired(b), Some(1));
        assert!(faults.remove(a));
        assert!(!faults.remove(a));
        assert_eq!(faults.plans(), vec![FaultPlan::new(Fault::CommitThenDrop)]);
        let c = faults.set(FaultPlan::new(Fault::DropConnection));
        assert_eq!(faults.fired(b), None);
        assert_eq!(faults.fired(c), Some(0));
        faults.clear();
        assert!(faults.plans().is_empty());
        assert!(faults.decide(&Method::GET, "/", None).outcome.is_none());
    }

    #[test]
    fn plans_round_trip_through_json() {
        let plan = FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(250),
        })
        .trigger(Trigger::Random {
            probability: 0.5,
            seed: 9,
        })
        .path_prefix("/api")
        .times(3);
        let json = serde_json::to_value(&plan).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "fault": {"kind": "latency", "delay_ms": 250},
                "trigger": {"kind": "random", "probability": 0.5, "seed": 9},
                "path_prefix": "/api",
                "writes_only": false,
                "times": 3
            })
        );
        let back: FaultPlan = serde_json::from_value(json).expect("deserializable");
        assert_eq!(back, plan);
        let minimal: FaultPlan =
            serde_json::from_str(r#"{"fault":{"kind":"server_error","status":503}}"#)
                .expect("defaults apply");
        assert_eq!(minimal, FaultPlan::new(Fault::ServerError { status: 503 }));
    }

    /// Serves a router with one counting handler behind the fault layer.
    async fn serve(
        faults: &Faults,
    ) -> (
        String,
        Arc<std::sync::atomic::AtomicU64>,
        tokio::task::JoinHandle<()>,
    ) {
        use axum::routing::post;
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let h = hits.clone();
        let app = axum::Router::new()
            .route(
                "/thing",
                post(move || {
                    let h = h.clone();
                    async move {
                        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        "done"
                    }
                }),
            )
            .layer(faults.layer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/thing"), hits, task)
    }

    fn hits_of(h: &std::sync::atomic::AtomicU64) -> u64 {
        h.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn over_http_each_fault_behaves_as_documented() {
        let faults = Faults::new();
        let (url, hits, task) = serve(&faults).await;
        let client = reqwest::Client::new();

        // No plan: passes.
        let r = client.post(&url).send().await.expect("response");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "done");
        assert_eq!(hits_of(&hits), 1);

        // 503 without running the handler.
        faults.set(FaultPlan::new(Fault::ServerError { status: 503 }));
        let r = client.post(&url).send().await.expect("response");
        assert_eq!(r.status(), 503);
        assert_eq!(hits_of(&hits), 1);

        // A 4xx refusal without running the handler; a status that means something else
        // (not a 4xx, or 401/403/429) is a plain 400.
        for (asked, answered) in [(422, 422), (400, 400), (503, 400), (403, 400), (429, 400)] {
            faults.set(FaultPlan::new(Fault::Refused { status: asked }));
            let r = client.post(&url).send().await.expect("response");
            assert_eq!(r.status(), answered, "{asked}");
        }
        assert_eq!(hits_of(&hits), 1);

        // 429 with Retry-After rounded up to seconds.
        faults.set(FaultPlan::new(Fault::TooManyRequests {
            retry_after: Duration::from_millis(1500),
        }));
        let r = client.post(&url).send().await.expect("response");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(hits_of(&hits), 1);

        // Dropped connection: no usable response and the handler did not run.
        faults.set(FaultPlan::new(Fault::DropConnection));
        let outcome = match client.post(&url).send().await {
            Ok(r) => r.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(
            outcome.is_err(),
            "a dropped connection must not yield a body"
        );
        assert_eq!(hits_of(&hits), 1);

        // Commit then drop: no usable response, but the handler ran.
        faults.set(FaultPlan::new(Fault::CommitThenDrop));
        let outcome = match client.post(&url).send().await {
            Ok(r) => r.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(outcome.is_err(), "commit-then-drop must not yield a body");
        assert_eq!(hits_of(&hits), 2);

        // Latency: the normal response, after the handler ran.
        faults.set(FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(20),
        }));
        let r = client.post(&url).send().await.expect("response");
        assert_eq!(r.status(), 200);
        assert_eq!(hits_of(&hits), 3);

        faults.clear();
        let r = client.post(&url).send().await.expect("response");
        assert_eq!(r.status(), 200);
        // 5 before the refusals, and the 5 refusals.
        assert_eq!(faults.injected(), 10);
        task.abort();
    }
}
