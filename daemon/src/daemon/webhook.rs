//! The МойСклад webhook receiver (axum): `POST /moysklad/webhook/<secret>/<instance>?requestId=…`
//! (and the older `POST /moysklad/webhook/<secret>`), and `GET /status/<secret>` (the journal,
//! the work waiting, counters) for operators. The same accept loop, with the same limits,
//! serves the operator server (`/healthz`, `/readyz`, `/metrics`, `/ui/<token>`: see
//! [`super::ops`]), on the webhook listener or on a listener of its own (`http.listen`).
//!
//! МойСклад gives a receiver 1.5 s, retries 3 times at once, then drops the notification. So
//! the handler only queues work (durably) and answers; a worker does the rest. A `requestId`
//! already handled is acknowledged without queueing again. A wrong secret gets 404, as if
//! nothing lived there. Nothing here logs the path: it holds the secret.
//!
//! # Under abuse
//!
//! The receiver runs its own accept loop (hyper's HTTP/1 server under the axum router) so
//! that nobody, with or without the secret, can stall it (limits from the `receiver:` config):
//!
//! * the request line and headers must arrive within `header_timeout` (hyper's
//!   `header_read_timeout`; it is also how long an idle keep-alive connection lives);
//! * reading the body and answering must end within `body_timeout` (408);
//! * at most `max_connections` connections are open. A connection past the cap closes the
//!   **oldest connection with no request in progress** (one still sending its headers, or
//!   idle): slow connections cannot keep a real sender out. When every open connection has
//!   a request in progress, the new connection is closed at once;
//! * at most `max_requests` requests are handled at once; past that, 503 at once (МойСклад
//!   retries, the poll is the backstop);
//! * a body larger than `max_body` gets 413: at once from its `Content-Length`, before a
//!   byte of it is read; a chunked body is cut when it passes the limit;
//! * when the inbox holds `max_inbox` items, new webhook work gets 503 (see
//!   [`Daemon::enqueue_bounded`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value as Json;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::config::ReceiverConfig;
use crate::state::{Source, Work};
use crate::world::lookups::ms_safe;

use super::{now_ms, Daemon, DEDUPE_TTL_MS};

/// Counters of the receiver and the inbox bound, shown on `/status`.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Idle or slow connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// New connections closed at once (every slot had a request in progress).
    pub refused: AtomicU64,
    /// Requests answered 503 because `max_requests` were in progress.
    pub shed: AtomicU64,
    /// Webhooks answered 503 because the inbox was full.
    pub inbox_full: AtomicU64,
    /// Webhook work whose МойСклад entity could not be fetched (404 / 1021).
    pub entities_gone: AtomicU64,
}

impl ReceiverStats {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One more webhook whose entity is gone.
    pub fn entity_gone(&self) {
        Self::bump(&self.entities_gone);
    }

    /// `n` more webhooks whose entities are gone.
    pub fn entities_gone_n(&self, n: u64) {
        self.entities_gone.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as JSON.
    pub fn to_json(&self) -> Json {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "connections_open": g(&self.open),
            "connections_accepted": g(&self.accepted),
            "connections_evicted": g(&self.evicted),
            "connections_refused": g(&self.refused),
            "requests_shed": g(&self.shed),
            "inbox_full": g(&self.inbox_full),
            "entities_gone": g(&self.entities_gone),
        })
    }
}

/// An open connection: how many requests it has in progress, and how to close it.
struct Slot {
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// The open connections, oldest first.
struct Slots {
    max: usize,
    next: u64,
    open: BTreeMap<u64, Slot>,
}

impl Slots {
    /// Admits a new connection: a free slot, else the slot of the oldest connection with no
    /// request in progress (closed), else none.
    fn admit(&mut self, stats: &ReceiverStats) -> Option<(u64, Arc<AtomicUsize>, Arc<Notify>)> {
        if self.open.len() >= self.max {
            let idle = self
                .open
                .iter()
                .find(|(_, s)| s.busy.load(Ordering::SeqCst) == 0)
                .map(|(id, _)| *id)?;
            if let Some(s) = self.open.remove(&idle) {
                s.close.notify_one();
                ReceiverStats::bump(&stats.evicted);
            }
        }
        let id = self.next;
        self.next += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        self.open.insert(
            id,
            Slot {
                busy: busy.clone(),
                close: close.clone(),
            },
        );
        Some((id, busy, close))
    }
}

/// Counts a request in progress on its connection until the response is written (or the
/// request is dropped).
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn new(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::SeqCst);
        InProgress(busy.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted until it is written.
struct Guarded {
    inner: Body,
    _in_progress: InProgress,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What a listener serves.
#[derive(Clone, Copy, Debug)]
pub(super) struct Role {
    /// The МойСклад webhook receiver.
    pub webhooks: bool,
    /// The operator routes (`/healthz`, `/readyz`, `/metrics`, `/ui/<token>`).
    pub operator: bool,
}

/// Starts serving on `listener` until `stop` turns true. Every listener serves
/// `/status/<secret>` and the ICML catalogue.
pub(super) fn spawn(
    daemon: Daemon,
    listener: tokio::net::TcpListener,
    stop: watch::Receiver<bool>,
    role: Role,
) -> tokio::task::JoinHandle<()> {
    let limits = daemon.inner.config.receiver.clone();
    let stats = daemon.inner.receiver_stats.clone();
    let app = router(daemon, role);
    tokio::spawn(serve(listener, app, limits, stats, stop))
}

/// The routes `role` serves, with the body limit.
pub(super) fn router(daemon: Daemon, role: Role) -> Router {
    let limits = daemon.inner.config.receiver.clone();
    let mut app = Router::new()
        .route("/status/{secret}", get(status))
        .merge(super::icml::routes());
    if role.webhooks {
        app = app
            .route("/moysklad/webhook/{secret}", post(receive))
            .route("/moysklad/webhook/{secret}/{instance}", post(receive_owned));
    }
    if role.operator {
        app = app
            .merge(super::ops::routes())
            .route("/admin/reload", post(admin_reload))
            .route("/admin/plan", get(admin_plan));
    }
    app.layer(DefaultBodyLimit::max(limits.max_body.0))
        .with_state(daemon)
}

/// The accept loop: admits connections under the cap and serves each with hyper's HTTP/1
/// server and the limits around the router.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ReceiverConfig,
    stats: Arc<ReceiverStats>,
    mut stop: watch::Receiver<bool>,
) {
    let service = tower::ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(limits.max_requests)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.max_body.0,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.body_timeout.0,
        ))
        .service(app);
    let slots = Arc::new(Mutex::new(Slots {
        max: limits.max_connections,
        next: 0,
        open: BTreeMap::new(),
    }));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.0)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted.
                tracing::warn!(error = %e, "webhook receiver: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&stats);
        let Some((id, busy, close)) = admitted else {
            ReceiverStats::bump(&stats.refused);
            drop(stream);
            continue;
        };
        ReceiverStats::bump(&stats.accepted);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let shed_stats = stats.clone();
        let conn_busy = busy.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_progress = InProgress::new(&busy);
            let service = service.clone();
            let shed_stats = shed_stats.clone();
            async move {
                let resp = match service.oneshot(req.map(Body::new)).await {
                    Ok(r) => r.map(Body::new),
                    Err(_) => {
                        // Overloaded (load shed): МойСклад retries; the poll is the backstop.
                        ReceiverStats::bump(&shed_stats.shed);
                        let mut r = Response::new(Body::empty());
                        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        r
                    }
                };
                Ok::<_, Infallible>(resp.map(|b| {
                    Body::new(Guarded {
                        inner: b,
                        _in_progress: in_progress,
                    })
                }))
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let slots = slots.clone();
        let stats = stats.clone();
        let mut stop = stop.clone();
        conns.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = close.notified() => {}
                _ = stop.changed() => {
                    // Stopping: a request in progress is finished (within `body_timeout`);
                    // a connection without one (idle, or still sending headers) is closed.
                    if conn_busy.load(Ordering::SeqCst) > 0 {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.as_mut().await;
                    }
                }
            }
            slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Requests in progress finish (each within `body_timeout`); idle connections close.
    let grace = limits.body_timeout.0 + Duration::from_secs(1);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// The work a notification carries: one item per event some rule listens to.
pub(super) fn works_of(daemon: &Daemon, body: &Json, request_id: Option<&str>) -> Vec<Work> {
    let mut out = Vec::new();
    let events = body.get("events").and_then(Json::as_array);
    for ev in events.into_iter().flatten() {
        let Some(entity) = ev.pointer("/meta/type").and_then(Json::as_str) else {
            continue;
        };
        let Some(href) = ev.pointer("/meta/href").and_then(Json::as_str) else {
            continue;
        };
        // `…/entity/<type>/<id>`, nothing else.
        let path = href.split(['?', '#']).next().unwrap_or_default();
        let segs: Vec<&str> = path.rsplitn(4, '/').collect();
        let (Some(id), Some(ty), Some(&"entity")) = (
            segs.first().copied().filter(|id| ms_safe(id)),
            segs.get(1).copied(),
            segs.get(2),
        ) else {
            continue;
        };
        if ty != entity || !ms_safe(entity) {
            continue;
        }
        let action = match ev.get("action").and_then(Json::as_str) {
            Some("CREATE") => "created",
            Some("UPDATE") => "updated",
            Some("DELETE") => "deleted",
            _ => continue,
        };
        if matches!(entity, "product" | "variant" | "service" | "bundle") {
            // The catalogue mirror asks МойСклад again the next time this item is matched.
            daemon.inner.catalogue.forget(id);
        }
        if !daemon.listens(&format!("moysklad.{entity}.{action}")) {
            continue;
        }
        let updated_fields = ev
            .get("updatedFields")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Work::Moysklad {
            entity: entity.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            href: href.to_string(),
            updated_fields,
            request_id: request_id.map(str::to_string),
            source: Source::Webhook,
        });
    }
    out
}

/// Whether `secret` is the one in our webhook path.
fn secret_ok(daemon: &Daemon, secret: &str) -> bool {
    daemon
        .inner
        .webhook_secret
        .as_deref()
        .is_some_and(|s| !secret.is_empty() && s == secret)
}

/// At most this many waiting items are listed on `/status` (their number is always given).
const STATUS_WAITING: usize = 200;

/// `GET /status/<secret>`: the journal (newest first), the work waiting, the counters.
async fn status(
    State(daemon): State<Daemon>,
    Path(secret): Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !secret_ok(&daemon, &secret) && !daemon.operator_ok(&secret) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let d = daemon.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<Json, crate::state::StateError> {
        let journal = d.state().journal_entries(d.journal_limits(), now_ms())?;
        let inbox = d.state().inbox()?;
        let cursors = d.state().cursors()?;
        let stats = d.stats();
        Ok(serde_json::json!({
            "journal": journal,
            "waiting": inbox.iter().take(STATUS_WAITING).map(|(seq, i)| serde_json::json!({
                "seq": seq, "subject": i.work.subject(), "attempts": i.attempts,
                "not_before": i.not_before, "last_error": i.last_error,
                "plan": i.plan, "parked": i.parked,
            })).collect::<Vec<_>>(),
            "rules_version": d.rules_version(),
            "rules_since": d.rules_since(),
            "rules_refused": d.last_refusal(),
            "waiting_count": inbox.len(),
            "cursors": cursors,
            "inbox_max": d.inner.config.receiver.max_inbox,
            "events": stats.events,
            "effects": stats.effects,
            "links": stats.links,
            "failures": stats.failures,
            "parked": stats.parked,
            "gave_up": stats.gave_up,
            "receiver": d.inner.receiver_stats.to_json(),
        }))
    })
    .await;
    match body {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Whether `Authorization: Bearer <token>` names the admin token (`admin.token`), the operator
/// token (`http.operator_token`) or the webhook secret.
fn operator_ok(daemon: &Daemon, headers: &axum::http::HeaderMap) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return false;
    };
    let admin = daemon.inner.config.admin.token.expose();
    (!admin.is_empty() && same(admin, given))
        || secret_ok(daemon, given)
        || daemon.operator_ok(given)
}

/// Compares two secrets without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `POST /admin/reload` (`Authorization: Bearer <admin token or webhook secret>`): loads and
/// checks the rules and settings; a clean set replaces the live one between two items. The
/// answer says what happened: 200 with `loaded` or `unchanged`, 422 with `refused` and the
/// diagnostics (the old set keeps running). 401 without a valid token.
async fn admin_reload(
    State(daemon): State<Daemon>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !operator_ok(&daemon, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match daemon.reload("http").await {
        Ok(outcome) => {
            let status = match outcome {
                super::ReloadOutcome::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::OK,
            };
            (status, axum::Json(outcome.to_json())).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /admin/plan?order=N` (operator token): what the rules would do with CRM order N now,
/// nothing applied (`skladsync plan --live`).
async fn admin_plan(
    State(daemon): State<Daemon>,
    headers: axum::http::HeaderMap,
    query: Query<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !operator_ok(&daemon, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(id) = query.get("order").and_then(|s| s.parse::<i64>().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "give ?order=<CRM order id>"})),
        )
            .into_response();
    };
    match daemon.dry_run_order(id).await {
        Ok(run) => axum::Json(run.to_json()).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dry run failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `POST /moysklad/webhook/<secret>/<instance>`: the path this runner registers.
async fn receive_owned(
    State(daemon): State<Daemon>,
    Path((secret, instance)): Path<(String, String)>,
    query: Query<HashMap<String, String>>,
    body: Bytes,
) -> StatusCode {
    if instance != daemon.inner.instance_id {
        return StatusCode::NOT_FOUND;
    }
    receive(State(daemon), Path(secret), query, body).await
}

/// `POST /moysklad/webhook/<secret>`: the path of registrations made before instance ids
/// (still answered, so nothing in flight is lost while they are replaced).
async fn receive(
    State(daemon): State<Daemon>,
    Path(secret): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> StatusCode {
    if !secret_ok(&daemon, &secret) {
        return StatusCode::NOT_FOUND;
    }
    let Ok(json) = serde_json::from_slice::<Json>(&body) else {
        tracing::warn!("webhook body is not JSON; ignored");
        return StatusCode::BAD_REQUEST;
    };
    let request_id = query.get("requestId").cloned();
    let d = daemon.clone();
    let queued =
        tokio::task::spawn_blocking(move || d.queue_notification(&json, request_id.as_deref()))
            .await;
    match queued {
        Ok(Ok(Some(n))) => {
            tracing::debug!(events = n, "webhook queued");
            StatusCode::OK
        }
        Ok(Ok(None)) => {
            ReceiverStats::bump(&daemon.inner.receiver_stats.inbox_full);
            tracing::warn!(
                max_inbox = daemon.inner.config.receiver.max_inbox,
                "the inbox is full: webhook refused with 503 (МойСклад retries; the \
                 reconciliation poll finds the change later)"
            );
            StatusCode::SERVICE_UNAVAILABLE
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot queue a webhook; МойСклад will retry");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook handler failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl Daemon {
    /// Queues the work of a МойСклад notification (received here, or relayed by a runner that
    /// does not serve the pair): `Some(events queued)` (0 for a `requestId` seen before),
    /// `None` when the inbox is full and nothing was queued.
    pub fn queue_notification(
        &self,
        body: &Json,
        request_id: Option<&str>,
    ) -> Result<Option<usize>, crate::state::StateError> {
        let now = now_ms();
        if let Some(r) = request_id {
            if self.state().request_seen(r, now)? {
                return Ok(Some(0));
            }
        }
        let works = works_of(self, body, request_id);
        let n = works.len();
        if !self.enqueue_bounded(works)? {
            return Ok(None);
        }
        if let Some(r) = request_id {
            self.state().mark_request(r, now + DEDUPE_TTL_MS)?;
        }
        Ok(Some(n))
    }

    /// Queues webhook or poll work unless the inbox is full (`max_inbox`): `false` means
    /// nothing was queued, and the caller keeps what it would lose (the webhook answers 503
    /// so МойСклад retries; a poll does not move its cursor). Work that merges into waiting
    /// items always fits.
    pub fn enqueue_bounded(&self, works: Vec<Work>) -> Result<bool, crate::state::StateError> {
        if works.is_empty() {
            return Ok(true);
        }
        let max = self.inner.config.receiver.max_inbox;
        let queued = self.inner.state.enqueue_bounded(works, now_ms(), max)?;
        if queued.is_some() {
            self.inner.wake.notify_one();
        }
        Ok(queued.is_some())
    }
}
