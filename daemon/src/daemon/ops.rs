//! The operator HTTP server's routes: `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus
//! text) and the status page `GET /ui/<token>` (server-rendered HTML, Russian or English).
//!
//! They are served on the operator listener (`http.listen`, else the webhook listener: see
//! [`super::webhook`] for the accept loop and its abuse limits, which apply to every route).
//! `/healthz` and `/readyz` are open; `/metrics` wants `Authorization: Bearer <token>`, the
//! page has the token in its path (a wrong token gets 404, as if nothing lived there). Nothing
//! here logs a path or a token.
//!
//! The numbers come from what the daemon already counts ([`crate::apply::Stats`], the
//! receiver's counters, the state) and from [`Observed`]: every API attempt the two clients
//! make, the time each poll cursor last caught up, when each API last answered. A scrape
//! builds a fresh `prometheus-client` registry from them and encodes it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::{json, Value as Json};

use super::{now_ms, Daemon};

/// The two systems, as labels.
pub const CRM: &str = "crm";
/// МойСклад, as a label.
pub const MOYSKLAD: &str = "moysklad";

/// When an API was last heard from.
#[derive(Clone, Debug, Default)]
struct Reach {
    /// The last answer that was not a refusal of the credentials (unix ms).
    ok: Option<i64>,
    /// A refusal of the credentials with no good answer since (unix ms, status).
    refused: Option<(i64, u16)>,
    /// The last attempt with no answer at all, or a server error (unix ms).
    failed: Option<i64>,
}

/// What the operator endpoints know beyond [`crate::apply::Stats`]: API attempts, when each
/// API last answered, when each poll cursor last caught up.
#[derive(Debug, Default)]
pub struct Observed {
    /// Attempts by (system, endpoint class, status or `none`).
    api: Mutex<BTreeMap<(String, String, String), u64>>,
    reach: Mutex<BTreeMap<&'static str, Reach>>,
    /// Poll cursor → when a poll last read it to the end (unix ms).
    cursors: Mutex<BTreeMap<String, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Observed {
    /// One API attempt of `system` (see [`crate::clients::ApiObserver`]).
    pub fn api(&self, system: &'static str, endpoint: &str, status: Option<u16>) {
        let label = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        *lock(&self.api)
            .entry((system.to_string(), endpoint.to_string(), label))
            .or_default() += 1;
        let now = now_ms();
        let mut reach = lock(&self.reach);
        let r = reach.entry(system).or_default();
        match status {
            Some(s @ (401 | 403)) => r.refused = Some((now, s)),
            Some(s) if s < 500 => {
                r.ok = Some(now);
                r.refused = None;
            }
            _ => r.failed = Some(now),
        }
    }

    /// A poll read cursor `name` to the end just now.
    pub fn caught_up(&self, name: &str) {
        lock(&self.cursors).insert(name.to_string(), now_ms());
    }

    /// Why `system` does not count as reached with valid credentials within `window_ms`, or
    /// `None` when it does.
    fn unreachable(&self, system: &'static str, window_ms: i64, now: i64) -> Option<String> {
        let r = lock(&self.reach).get(system).cloned().unwrap_or_default();
        match (r.ok, r.refused) {
            (_, Some((at, status))) => Some(format!(
                "{system}: the credentials were refused ({status}) {}s ago",
                (now - at) / 1000
            )),
            (None, _) if r.failed.is_some() => Some(format!(
                "{system}: not reached yet (no answer, or server errors)"
            )),
            (None, _) => Some(format!("{system}: not reached yet")),
            (Some(ok), _) if now - ok > window_ms => Some(format!(
                "{system}: last reached {}s ago (more than {}s)",
                (now - ok) / 1000,
                window_ms / 1000
            )),
            _ => None,
        }
    }
}

/// The routes of the operator server (merged into the listener's router).
pub(super) fn routes() -> Router<Daemon> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ui/{token}", get(page))
}

impl Daemon {
    /// Whether `token` opens the operator pages: the operator token, or the webhook secret
    /// (what `/status/<secret>` always took).
    pub(super) fn operator_ok(&self, token: &str) -> bool {
        let i = &self.inner;
        !token.is_empty()
            && (i.operator_token.as_deref() == Some(token)
                || i.webhook_secret.as_deref() == Some(token))
    }

    /// Why the daemon is not ready (empty: ready): the state answers, a rule set is live, and
    /// both APIs answered with valid credentials within three poll intervals.
    pub fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        // One read of the store (the inbox length is cached; this is not).
        if let Err(e) = self.state().misc("instance_id") {
            why.push(format!("state: {e}"));
        }
        if self.rules_version().is_empty() {
            why.push("rules: none loaded".to_string());
        }
        let iv = &self.inner.config.intervals;
        let window = |d: std::time::Duration| {
            i64::try_from(d.saturating_mul(3).as_millis())
                .unwrap_or(i64::MAX / 4)
                .saturating_add(60_000)
        };
        let now = now_ms();
        let o = &self.inner.observed;
        why.extend(o.unreachable(CRM, window(iv.crm_poll.0), now));
        why.extend(o.unreachable(MOYSKLAD, window(iv.reconcile.0), now));
        why
    }
}

async fn healthz() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"status": "alive"})),
    )
        .into_response()
}

async fn readyz(State(daemon): State<Daemon>) -> Response {
    let d = daemon.clone();
    let why = tokio::task::spawn_blocking(move || d.not_ready())
        .await
        .unwrap_or_else(|e| vec![format!("readiness check failed: {e}")]);
    let (status, body) = if why.is_empty() {
        (
            StatusCode::OK,
            json!({"ready": true, "rules_version": daemon.rules_version()}),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reasons": why, "rules_version": daemon.rules_version()}),
        )
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn metrics(State(daemon): State<Daemon>, headers: HeaderMap) -> Response {
    if !bearer(&headers).is_some_and(|t| daemon.operator_ok(t)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    let d = daemon.clone();
    match tokio::task::spawn_blocking(move || d.encode_metrics()).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot build /metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Label sets of the metric families.
type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Why `/metrics` could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The state could not be read.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The text could not be written.
    #[error("encoding the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

impl Daemon {
    /// `/metrics`: every family, in the Prometheus (OpenMetrics) text format.
    pub fn encode_metrics(&self) -> Result<String, MetricsError> {
        let mut reg = Registry::with_prefix("skladsync");
        let stats = self.stats();
        let now = now_ms();

        let events = Family::<Labels, Counter>::default();
        for ((name, outcome), n) in &stats.event_outcomes {
            events
                .get_or_create(&labels(&[("event", name), ("outcome", outcome)]))
                .inc_by(*n);
        }
        reg.register(
            "events",
            "Events processed, by event name and outcome (applied, failed, parked, lookup_failed, interrupted)",
            events,
        );

        let effects = Family::<Labels, Counter>::default();
        for ((kind, outcome), n) in &stats.effect_outcomes {
            effects
                .get_or_create(&labels(&[("kind", kind), ("outcome", outcome)]))
                .inc_by(*n);
        }
        reg.register(
            "effects",
            "Effects run, by kind (op system.entity, link, journal, task, skip) and outcome (ok, failed)",
            effects,
        );

        let api = Family::<Labels, Counter>::default();
        for ((system, endpoint, status), n) in lock(&self.inner.observed.api).iter() {
            api.get_or_create(&labels(&[
                ("system", system),
                ("endpoint", endpoint),
                ("status", status),
            ]))
            .inc_by(*n);
        }
        reg.register(
            "api_requests",
            "HTTP attempts to the two APIs, by system, endpoint class and status (none: no answer)",
            api,
        );

        let budget = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let capacity = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let snap = self.inner.systems.ms.limiter().snapshot();
        budget
            .get_or_create(&labels(&[("system", MOYSKLAD)]))
            .set(snap.tokens);
        capacity
            .get_or_create(&labels(&[("system", MOYSKLAD)]))
            .set(f64::from(snap.capacity));
        reg.register(
            "ratelimit_budget_units",
            "Request budget left now (МойСклад units; retailCRM is paced client-side and has none to report)",
            budget,
        );
        reg.register(
            "ratelimit_capacity_units",
            "Size of the request budget (МойСклад units per window)",
            capacity,
        );

        let inbox = self.state().inbox()?;
        let depth = Gauge::<i64>::default();
        depth.set(i64::try_from(inbox.len()).unwrap_or(i64::MAX));
        reg.register(
            "inbox_items",
            "Work items waiting in the inbox (parked ones included)",
            depth,
        );
        let oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let first = inbox.iter().map(|(_, i)| i.queued_at).min();
        oldest.set(first.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0));
        reg.register(
            "inbox_oldest_age_seconds",
            "Age of the oldest waiting item (0 when the inbox is empty)",
            oldest,
        );
        let parked = Gauge::<i64>::default();
        parked.set(
            i64::try_from(inbox.iter().filter(|(_, i)| i.parked.is_some()).count())
                .unwrap_or(i64::MAX),
        );
        reg.register(
            "parked_items",
            "Items parked until the rules change (their evaluation fails in a way that repeats)",
            parked,
        );

        let lag = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (cursor, at) in lock(&self.inner.observed.cursors).iter() {
            lag.get_or_create(&labels(&[("cursor", cursor)]))
                .set((now - at).max(0) as f64 / 1000.0);
        }
        reg.register(
            "poll_cursor_lag_seconds",
            "Seconds since each poll cursor was last read to the end (CRM history feeds, МойСклад updated>= watermarks)",
            lag,
        );

        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&labels(&[("version", &self.rules_version())]))
            .set(1);
        reg.register("rules_info", "The live rule set (its content hash)", info);

        let counters = [
            ("links_written", "Links written", stats.links),
            (
                "journal_entries_written",
                "Journal entries written",
                stats.journal,
            ),
            ("gave_up", "Work items given up (GAVE_UP)", stats.gave_up),
            (
                "echoes_ignored",
                "МойСклад changes ignored as echoes of the runner's own writes",
                stats.echoes,
            ),
        ];
        for (name, help, n) in counters {
            let c = Counter::<u64>::default();
            c.inc_by(n);
            reg.register(name, help, c);
        }
        let rs = self.inner.receiver_stats.to_json();
        let receiver = Family::<Labels, Gauge>::default();
        if let Some(m) = rs.as_object() {
            for (k, v) in m {
                receiver
                    .get_or_create(&labels(&[("counter", k)]))
                    .set(v.as_i64().unwrap_or(0));
            }
        }
        reg.register(
            "receiver",
            "Webhook receiver counters (connections open, accepted, evicted, refused; requests shed; inbox full; entities gone)",
            receiver,
        );

        let mut out = String::new();
        encode(&mut out, &reg)?;
        Ok(out)
    }
}

// --- the status page ------------------------------------------------------------------------

/// The page's template.
const PAGE: &str = include_str!("templates/status.html");

/// Journal filters and the order lookup, all from the query string.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PageQuery {
    lang: Option<String>,
    level: String,
    code: String,
    direction: String,
    subject: String,
    order: String,
}

/// `ru` or `en`: `?lang=`, else the first of them in `Accept-Language` (by weight), else `ru`.
fn language(query: Option<&str>, headers: &HeaderMap) -> &'static str {
    match query {
        Some("en") => return "en",
        Some("ru") => return "ru",
        _ => {}
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut tags: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.trim().split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((q, tag))
        })
        .collect();
    tags.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, tag) in tags {
        let primary = tag
            .split('-')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if primary == "ru" {
            return "ru";
        }
        if primary == "en" {
            return "en";
        }
    }
    "ru"
}

/// The page's labels in `lang`.
fn texts(lang: &str) -> BTreeMap<&'static str, &'static str> {
    let pairs: &[(&str, &str, &str)] = &[
        (
            "title",
            "Синхронизация retailCRM ↔ МойСклад",
            "retailCRM ↔ МойСклад sync",
        ),
        ("rules_version", "Версия правил", "Rule set version"),
        ("ready", "Готов к работе", "Ready"),
        ("not_ready", "Не готов", "Not ready"),
        ("counters", "Счётчики", "Counters"),
        ("events", "События", "Events"),
        ("effects", "Действия", "Effects"),
        ("links", "Связи записаны", "Links written"),
        ("failures", "Ошибки действий", "Effect failures"),
        ("parked", "Отложено", "Parked"),
        ("gave_up", "Брошено", "Given up"),
        ("waiting", "Ожидающая работа", "Waiting work"),
        ("waiting_count", "В очереди", "Queued"),
        ("nothing_waiting", "Очередь пуста", "Nothing is waiting"),
        ("subject", "Объект", "Subject"),
        ("attempts", "Попытки", "Attempts"),
        ("not_before", "Не раньше", "Not before"),
        ("reason", "Причина", "Reason"),
        ("state", "Состояние", "State"),
        (
            "st_parked",
            "отложено до смены правил",
            "parked until the rules change",
        ),
        ("st_plan", "план выполняется", "plan in progress"),
        ("st_waiting", "ждёт", "waiting"),
        ("find_order", "Найти заказ", "Find an order"),
        ("order_number", "Номер заказа", "Order number"),
        ("find", "Найти", "Find"),
        (
            "order_not_found",
            "Заказ не найден в retailCRM",
            "No such order in retailCRM",
        ),
        (
            "not_linked",
            "Не связан с МойСклад",
            "Not linked to МойСклад",
        ),
        ("lookup_failed", "Не удалось найти", "The lookup failed"),
        ("open_crm", "Открыть в retailCRM", "Open in retailCRM"),
        ("open_ms", "Открыть в МойСклад", "Open in МойСклад"),
        ("journal", "Журнал", "Journal"),
        ("level", "Уровень", "Level"),
        ("code", "Код", "Code"),
        ("direction", "Направление", "Direction"),
        ("any", "все", "any"),
        ("filter", "Показать", "Filter"),
        ("reset", "Сбросить", "Reset"),
        ("time", "Время (UTC)", "Time (UTC)"),
        ("rule", "Правило", "Rule"),
        ("text", "Текст", "Text"),
        ("count", "Раз", "Times"),
        ("shown", "Показано", "Shown"),
        ("of", "из", "of"),
        ("no_entries", "Нет записей", "No entries"),
        (
            "receiver",
            "HTTP-сервер: соединения и запросы",
            "HTTP server: connections and requests",
        ),
    ];
    pairs
        .iter()
        .map(|(k, ru, en)| (*k, if lang == "en" { *en } else { *ru }))
        .collect()
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A subject as one line of text (`order: 1001, work: crm.order/7`).
fn subject_text(v: &Json) -> String {
    match v {
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Json::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Serialize)]
struct EntryView {
    time: String,
    level: String,
    code: String,
    direction: String,
    rule: String,
    subject: String,
    text: String,
    count: u32,
}

#[derive(Serialize)]
struct WaitingView {
    seq: u64,
    subject: String,
    attempts: u32,
    not_before: String,
    state: &'static str,
    reason: String,
}

#[derive(Serialize, Default)]
struct OrderView {
    number: String,
    found: bool,
    error: Option<String>,
    crm_id: Option<String>,
    crm_url: Option<String>,
    ms_id: Option<String>,
    ms_url: Option<String>,
}

/// At most this many waiting items are listed on the page (their number is always given).
const PAGE_WAITING: usize = 200;

/// The МойСклад web UI that goes with an API base URL: `online.moysklad.ru` for the real
/// API, the same host otherwise (an emulator).
fn ms_web(api_base: &str) -> String {
    match url::Url::parse(api_base) {
        Ok(u) if u.host_str() == Some("api.moysklad.ru") => {
            "https://online.moysklad.ru/app/".to_string()
        }
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}/app/",
                u.scheme(),
                u.host_str().unwrap_or_default()
            )
        }
        Err(_) => "https://online.moysklad.ru/app/".to_string(),
    }
}

impl Daemon {
    /// Finds a CRM order by its number and its МойСклад counterpart through the links.
    async fn find_order(&self, number: &str) -> OrderView {
        let mut view = OrderView {
            number: number.to_string(),
            ..OrderView::default()
        };
        let crm = &self.inner.systems.crm;
        let filter = json!({"numbers": [number]});
        let found = crm
            .orders_list(&filter, crate::clients::retailcrm::PageRequest::new(1, 20))
            .await;
        let orders = match found {
            Ok(page) => page.items,
            Err(e) => {
                view.error = Some(e.to_string());
                return view;
            }
        };
        let Some(order) = orders
            .iter()
            .find(|o| o.get("number").and_then(Json::as_str) == Some(number))
        else {
            return view;
        };
        view.found = true;
        let Some(id) = order.get("id").filter(|v| !v.is_null()) else {
            return view;
        };
        let id_text = crate::state::id_text(id).unwrap_or_default();
        let crm_base = self.inner.config.crm.url.trim_end_matches('/');
        let crm_base = crm_base.strip_suffix("/api/v5").unwrap_or(crm_base);
        view.crm_url = Some(format!("{crm_base}/orders/{id_text}/edit"));
        view.crm_id = Some(id_text);
        match self.state().linked("order", "crm", id) {
            Ok(Some(link)) => {
                if let Some(ms) = link.ids.get("moysklad").and_then(crate::state::id_text) {
                    view.ms_url = Some(format!(
                        "{}#customerorder/edit?id={ms}",
                        ms_web(self.inner.systems.ms.base_url())
                    ));
                    view.ms_id = Some(ms);
                }
            }
            Ok(None) => {}
            Err(e) => view.error = Some(e.to_string()),
        }
        view
    }
}

/// `GET /ui/<token>`: the status page.
async fn page(
    State(daemon): State<Daemon>,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    if !daemon.operator_ok(&token) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let lang = language(q.lang.as_deref(), &headers);
    let order = q.order.trim().to_string();
    let order_view = if order.is_empty() {
        None
    } else {
        Some(daemon.find_order(&order).await)
    };
    let d = daemon.clone();
    let rendered = tokio::task::spawn_blocking(move || render_page(&d, &q, lang, order_view)).await;
    match rendered {
        Ok(Ok(html)) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                ),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            html,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot render the status page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Why the page could not be rendered.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
}

fn render_page(
    d: &Daemon,
    q: &PageQuery,
    lang: &str,
    order: Option<OrderView>,
) -> Result<String, PageError> {
    let all = d.state().journal_entries(d.journal_limits(), now_ms())?;
    let total = all.len();
    let mut levels: Vec<String> = vec!["error".into(), "warning".into(), "info".into()];
    let mut directions: Vec<String> = Vec::new();
    for e in &all {
        if !levels.contains(&e.level) {
            levels.push(e.level.clone());
        }
        if !directions.contains(&e.direction) {
            directions.push(e.direction.clone());
        }
    }
    directions.sort();
    let subject_q = q.subject.trim().to_lowercase();
    let code_q = q.code.trim().to_lowercase();
    let journal: Vec<EntryView> = all
        .into_iter()
        .filter(|e| q.level.is_empty() || e.level == q.level)
        .filter(|e| q.direction.is_empty() || e.direction == q.direction)
        .filter(|e| code_q.is_empty() || e.code.to_lowercase().contains(&code_q))
        .map(|e| EntryView {
            time: utc(e.time),
            subject: subject_text(&e.subject),
            level: e.level,
            code: e.code,
            direction: e.direction,
            rule: e.rule,
            text: e.text,
            count: e.count,
        })
        .filter(|e| subject_q.is_empty() || e.subject.to_lowercase().contains(&subject_q))
        .collect();
    let inbox = d.state().inbox()?;
    let waiting: Vec<WaitingView> = inbox
        .iter()
        .take(PAGE_WAITING)
        .map(|(seq, i)| WaitingView {
            seq: *seq,
            subject: i.work.subject().unwrap_or_else(|| format!("seq/{seq}")),
            attempts: i.attempts,
            not_before: utc(i.not_before),
            state: if i.parked.is_some() {
                "st_parked"
            } else if i.plan {
                "st_plan"
            } else {
                "st_waiting"
            },
            reason: i
                .parked
                .as_ref()
                .map(|p| p.reason.clone())
                .or_else(|| i.last_error.clone())
                .unwrap_or_default(),
        })
        .collect();
    let stats = d.stats();
    let not_ready = d.not_ready();
    let mut env = minijinja::Environment::new();
    // Every value is HTML-escaped (the template's name ends in `.html`).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("status.html", PAGE)?;
    let tpl = env.get_template("status.html")?;
    let html = tpl.render(minijinja::value::Serde(json!({
        "t": texts(lang),
        "lang": lang,
        "other_lang": if lang == "en" { "ru" } else { "en" },
        "rules_version": d.rules_version(),
        "not_ready": not_ready,
        "events": stats.events,
        "effects": stats.effects,
        "links": stats.links,
        "failures": stats.failures,
        "parked": stats.parked,
        "gave_up": stats.gave_up,
        "receiver": d.inner.receiver_stats.to_json(),
        "waiting": waiting,
        "waiting_count": inbox.len(),
        "journal": journal,
        "journal_total": total,
        "levels": levels,
        "directions": directions,
        "q": {
            "level": q.level, "code": q.code, "direction": q.direction,
            "subject": q.subject, "order": q.order,
        },
        "order": order,
    })))?;
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_follows_the_query_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(language(None, &h), "ru");
        h.insert(
            header::ACCEPT_LANGUAGE,
            "de-DE, en-US;q=0.8, ru;q=0.5".parse().unwrap(),
        );
        assert_eq!(language(None, &h), "en");
        assert_eq!(language(Some("ru"), &h), "ru");
        h.insert(header::ACCEPT_LANGUAGE, "ru-RU,ru;q=0.9".parse().unwrap());
        assert_eq!(language(None, &h), "ru");
        assert_eq!(language(Some("en"), &h), "en");
    }

    #[test]
    fn an_api_that_refused_the_credentials_last_is_not_ready() {
        let o = Observed::default();
        assert!(
            o.unreachable(CRM, 60_000, now_ms()).is_some(),
            "never reached"
        );
        o.api(CRM, "orders", Some(200));
        assert_eq!(o.unreachable(CRM, 60_000, now_ms()), None);
        o.api(CRM, "orders", Some(401));
        let why = o.unreachable(CRM, 60_000, now_ms()).unwrap();
        assert!(why.contains("refused (401)"), "{why}");
        o.api(CRM, "orders", Some(404));
        assert_eq!(o.unreachable(CRM, 60_000, now_ms() + 1), None);
        assert!(
            o.unreachable(CRM, 60_000, now_ms() + 120_000).is_some(),
            "stale"
        );
    }

    #[test]
    fn the_web_ui_of_the_real_api_is_online_moysklad() {
        assert_eq!(
            ms_web("https://api.moysklad.ru/api/remap/1.2"),
            "https://online.moysklad.ru/app/"
        );
        assert_eq!(
            ms_web("http://127.0.0.1:9/api/remap/1.2"),
            "http://127.0.0.1:9/app/"
        );
    }
}
