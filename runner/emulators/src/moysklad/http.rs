//! The HTTP face of the emulator: gzip and auth checks, the request budget, routing of
//! `/api/remap/1.2/…` to the state, JSON responses, and webhook dispatch after each change.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::audit;
use super::clock::Clock;
use super::errors::{self, MsError};
use super::kinds;
use super::limits::{Charge, Limiter};
use super::query::{id_of, Expand, ListParams};
use super::render::{collection_meta, Links};
use super::state::{is_uuid, Ctx, Event, State, Target};
use super::stock;
use super::webhooks::Deliverer;
use super::EmulatorUser;
use crate::faults::{Faults, Rejection, Renderer};

/// One request the emulator answered (for assertions such as "no retry after a 4xx").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path (without query).
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Status answered.
    pub status: u16,
    /// Login of the authenticated user, if any.
    pub user: Option<String>,
}

/// Everything the handler shares.
pub struct Shared {
    /// The account.
    pub state: Mutex<State>,
    /// Users allowed in.
    pub users: Vec<EmulatorUser>,
    /// Request budget.
    pub limiter: Limiter,
    /// Emulated time.
    pub clock: Clock,
    /// Webhook sender.
    pub deliverer: Arc<Deliverer>,
    /// Log of answered requests.
    pub requests: Mutex<Vec<RequestRecord>>,
}

impl Shared {
    /// Locks the state (a poisoned lock is taken over: state changes are applied whole). The
    /// state is marked changed: whoever locks it may change it.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state_unchanged();
        s.changed();
        s
    }

    /// Locks the state to read it (or to answer a GET): computed reports stay valid.
    pub fn state_unchanged(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A context for the given user at the current emulated time.
    pub fn ctx(&self, state: &State, login: &str, seed: bool) -> Ctx {
        Ctx {
            now: self.clock.now(),
            employee: state.employee_by_uid(login),
            seed,
        }
    }

    /// Records a change: its audit context (see [`super::audit`]), then the webhooks its
    /// `events` trigger, skipping subscribers whose URL starts with one of
    /// `disabled_prefixes` (`X-Lognex-WebHook-DisableByPrefix`). The notifications'
    /// `auditContext` is that context.
    pub fn record_change(
        &self,
        state: &mut State,
        events: &[Event],
        uid: &str,
        source: &str,
        now: NaiveDateTime,
        disabled_prefixes: &[String],
    ) {
        let Some(audit) = state.record_audit(events, uid, source, now) else {
            return;
        };
        self.dispatch_webhooks(state, events, uid, now, disabled_prefixes, &audit);
    }

    fn dispatch_webhooks(
        &self,
        state: &State,
        events: &[Event],
        uid: &str,
        now: NaiveDateTime,
        disabled_prefixes: &[String],
        audit: &str,
    ) {
        for hook in state.all("webhook") {
            if hook["enabled"] != json!(true) {
                continue;
            }
            let url = hook["url"].as_str().unwrap_or("").to_string();
            if disabled_prefixes
                .iter()
                .any(|p| url.starts_with(p.as_str()))
            {
                continue;
            }
            let fields = hook["diffType"] == json!("FIELDS");
            let matching: Vec<Value> = events
                .iter()
                .filter(|e| {
                    hook["entityType"] == json!(e.entity_type) && hook["action"] == json!(e.action)
                })
                .map(|e| {
                    let mut ev = json!({
                        "meta": {"type": e.entity_type, "href": e.href},
                        "action": e.action,
                        "accountId": state.account_id
                    });
                    if fields && e.action == "UPDATE" {
                        ev["updatedFields"] = json!(e.updated_fields);
                    }
                    ev
                })
                .collect();
            if matching.is_empty() {
                continue;
            }
            let body = json!({
                "auditContext": {
                    "meta": {"type": "audit", "href": format!("{}/audit/{audit}", state.base_url)},
                    "uid": uid,
                    "moment": now.format("%Y-%m-%d %H:%M:%S").to_string()
                },
                "events": matching
            });
            self.deliverer
                .send(url, uuid::Uuid::new_v4().to_string(), body);
        }
    }
}

/// How injected 429/5xx faults look: МойСклад's error bodies and headers.
pub fn fault_renderer() -> Renderer {
    Arc::new(|r: &Rejection| match r {
        Rejection::TooManyRequests { retry_after } => {
            let ms = retry_after.as_millis().to_string();
            let mut resp = json_response(&errors::rate_limited());
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&ms) {
                h.insert("X-Lognex-Retry-After", v.clone());
                h.insert("X-Lognex-Reset", v);
            }
            resp
        }
        Rejection::ServerError { status } => json_response(&errors::unknown_error(*status)),
        Rejection::Refused { status } => json_response(&errors::unknown_error(*status)),
    })
}

fn json_response(e: &MsError) -> Response {
    body_response(e.status, Some(&e.body()))
}

fn body_response(status: StatusCode, body: Option<&Value>) -> Response {
    match body {
        Some(v) => {
            let mut r = (status, Body::from(v.to_string())).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            );
            r
        }
        None => status.into_response(),
    }
}

/// The router, from the outside in: the per-credential cap on requests in flight (so that a
/// slow request, e.g. one delayed by an injected latency, holds its slot for its whole
/// life), the fault switch, gzip compression, then the API.
pub fn router(shared: Arc<Shared>, faults: &Faults) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(shared.clone())
        // МойСклад accepts request bodies up to 20 MB (API doc §3).
        .layer(axum::extract::DefaultBodyLimit::max(20 * 1024 * 1024))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .layer(faults.layer_with(fault_renderer()))
        .layer(axum::middleware::from_fn_with_state(shared, parallel_guard))
}

/// Refuses a request with 1073 when its credential already has the maximum in flight.
async fn parallel_guard(
    AxState(shared): AxState<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Unauthenticated requests pass: the handler answers them with 401.
    let login = authenticate(&shared.users, req.headers()).map(|u| u.login.clone());
    let _guard = match &login {
        Some(l) => match shared.limiter.enter(l) {
            Some(g) => Some(g),
            None => {
                let resp = json_response(&errors::too_parallel());
                shared
                    .requests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(RequestRecord {
                        method: req.method().to_string(),
                        path: req.uri().path().to_string(),
                        query: req.uri().query().map(str::to_string),
                        status: resp.status().as_u16(),
                        user: login.clone(),
                    });
                return resp;
            }
        },
        None => None,
    };
    next.run(req).await
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| {
            let mut parts = c.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    == Some(0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !q_zero
        })
}

fn authenticate<'a>(users: &'a [EmulatorUser], headers: &HeaderMap) -> Option<&'a EmulatorUser> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(b64) = auth.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (login, password) = text.split_once(':')?;
        users
            .iter()
            .find(|u| u.login == login && u.password == password)
    } else if let Some(token) = auth.strip_prefix("Bearer ") {
        users
            .iter()
            .find(|u| u.token.as_deref() == Some(token.trim()))
    } else {
        None
    }
}

fn rate_headers(resp: &mut Response, limiter: &Limiter, remaining: u32, retry_after_ms: u128) {
    let Some(cfg) = &limiter.config else { return };
    let h = resp.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("X-RateLimit-Limit", cfg.units.to_string());
    put("X-RateLimit-Remaining", remaining.to_string());
    put(
        "X-Lognex-Retry-TimeInterval",
        cfg.window.as_millis().to_string(),
    );
    put("X-Lognex-Reset", retry_after_ms.to_string());
    put("X-Lognex-Retry-After", retry_after_ms.to_string());
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut record = RequestRecord {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        status: 0,
        user: None,
    };
    let resp = handle_inner(&shared, &method, &uri, &headers, &body, &mut record);
    record.status = resp.status().as_u16();
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);
    resp
}

fn handle_inner(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    record: &mut RequestRecord,
) -> Response {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/api/remap/1.2/") else {
        return json_response(&errors::unknown_path(path));
    };
    // gzip is mandatory: 415 with no body otherwise.
    if !accepts_gzip(headers) {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Some(user) = authenticate(&shared.users, headers) else {
        return json_response(&errors::unauthorized());
    };
    record.user = Some(user.login.clone());
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let weight = shared.limiter.weight(&segs, user.solution);
    let remaining = match shared.limiter.charge(&user.login, weight) {
        Charge::Allowed { remaining } => remaining,
        Charge::Refused { retry_after } => {
            let mut r = json_response(&errors::rate_limited());
            rate_headers(&mut r, &shared.limiter, 0, retry_after.as_millis().max(1));
            return r;
        }
    };
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let ok = accept.contains("application/json") || accept.contains("*/*");
        if !ok {
            let mut r = json_response(&MsError::new(
                StatusCode::BAD_REQUEST,
                1062,
                "Неверное значение заголовка 'Accept'. Поддерживается только значение 'application/json;charset=utf-8'",
            ));
            rate_headers(&mut r, &shared.limiter, remaining, 0);
            return r;
        }
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let json_body = if body.is_empty() {
        None
    } else {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.contains("application/json") {
            let mut r = json_response(&MsError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                1037,
                "Неверно указан Content-Type запроса",
            ));
            rate_headers(&mut r, &shared.limiter, remaining, 0);
            return r;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => Some(v),
            Err(_) => {
                let mut r = json_response(&errors::bad_json());
                rate_headers(&mut r, &shared.limiter, remaining, 0);
                return r;
            }
        }
    };
    let disabled: Vec<String> = headers
        .get_all("X-Lognex-WebHook-DisableByPrefix")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let href_base = format!(
        "{}{}",
        shared.state_unchanged().base_url,
        &format!("/{rest}")
    );
    let mut resp = {
        // A GET changes nothing (the stock reports' computed rows stay valid); anything else
        // marks the state changed before and after.
        let read_only = *method == Method::GET;
        let mut state = if read_only {
            shared.state_unchanged()
        } else {
            shared.state()
        };
        let ctx = shared.ctx(&state, &user.login, false);
        let now = ctx.now;
        let req = Req {
            method,
            segs: &segs,
            query: &query,
            body: json_body.as_ref(),
            href: href_base.trim_end_matches('/'),
            ctx,
            login: &user.login,
        };
        let answer = dispatch(&mut state, &req);
        if !read_only {
            state.changed();
        }
        match answer {
            Ok(out) => {
                shared.record_change(
                    &mut state,
                    &out.events,
                    &user.login,
                    super::audit::SOURCE_API,
                    now,
                    &disabled,
                );
                body_response(out.status, out.body.as_ref())
            }
            Err(e) => json_response(&e),
        }
    };
    rate_headers(&mut resp, &shared.limiter, remaining, 0);
    resp
}

struct Req<'a> {
    method: &'a Method,
    segs: &'a [&'a str],
    query: &'a [(String, String)],
    body: Option<&'a Value>,
    href: &'a str,
    ctx: Ctx,
    login: &'a str,
}

impl Req<'_> {
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    fn expand(&self) -> Expand {
        self.param("expand").map(Expand::parse).unwrap_or_default()
    }

    fn body(&self) -> Result<&Value, MsError> {
        self.body.ok_or_else(|| {
            MsError::new(StatusCode::BAD_REQUEST, 1027, "Запрос не содержит объектов")
        })
    }
}

/// What a route produced.
struct Out {
    status: StatusCode,
    body: Option<Value>,
    events: Vec<Event>,
}

impl Out {
    fn json(v: Value) -> Out {
        Out {
            status: StatusCode::OK,
            body: Some(v),
            events: vec![],
        }
    }

    fn with_events(v: Option<Value>, events: Vec<Event>) -> Out {
        Out {
            status: StatusCode::OK,
            body: v,
            events,
        }
    }
}

fn check_id(id: &str) -> Result<(), MsError> {
    if is_uuid(id) {
        Ok(())
    } else {
        Err(errors::bad_uuid(id))
    }
}

fn known(ty: &str) -> Result<&'static kinds::Kind, MsError> {
    kinds::find(ty).ok_or_else(|| errors::unknown_type(ty))
}

fn dispatch(state: &mut State, r: &Req<'_>) -> Result<Out, MsError> {
    let m = r.method;
    match r.segs {
        ["context", "employee"] if *m == Method::GET => {
            let id = state
                .employee_by_uid(r.login)
                .ok_or_else(|| errors::not_found("employee", r.login))?;
            let e = state
                .get("employee", &id)
                .cloned()
                .ok_or_else(|| errors::not_found("employee", &id))?;
            Ok(Out::json(state.render(&e, &r.expand(), &Links::default())))
        }
        ["context", "companysettings", "metadata"] if *m == Method::GET => {
            Ok(Out::json(company_metadata(state)))
        }
        ["report", "stock", "all"] if *m == Method::GET => {
            Ok(Out::json(stock::report_all(state, r.href, r.query)?))
        }
        ["report", "stock", "bystore"] if *m == Method::GET => {
            Ok(Out::json(stock::report_by_store(state, r.href, r.query)?))
        }
        ["report", "stock", "all", "current"] if *m == Method::GET => {
            Ok(Out::json(stock::report_current(state, false, r.query)?))
        }
        ["report", "stock", "bystore", "current"] if *m == Method::GET => {
            Ok(Out::json(stock::report_current(state, true, r.query)?))
        }
        ["context", "companysettings", "pricetype"] if *m == Method::GET => {
            Ok(Out::json(Value::Array(
                state
                    .price_types
                    .iter()
                    .map(|p| state.render_price_type(p))
                    .collect(),
            )))
        }
        ["context", "companysettings", "pricetype", "default"] if *m == Method::GET => state
            .price_types
            .first()
            .map(|p| Out::json(state.render_price_type(p)))
            .ok_or_else(|| errors::not_found("pricetype", "default")),
        ["context", "companysettings", "pricetype", id] if *m == Method::GET => state
            .price_types
            .iter()
            .find(|p| p["id"] == json!(id))
            .map(|p| Out::json(state.render_price_type(p)))
            .ok_or_else(|| errors::not_found("pricetype", id)),
        ["entity", "group"] if *m == Method::GET => {
            let g = main_group(state);
            Ok(Out::json(json!({
                "context": state.context(),
                "meta": collection_meta(r.href, r.query, "group", 1, 1000, 0),
                "rows": [g]
            })))
        }
        ["entity", "group", id] if *m == Method::GET => {
            if *id == super::state::MAIN_GROUP_ID {
                Ok(Out::json(main_group(state)))
            } else {
                Err(errors::not_found("group", id))
            }
        }
        ["audit"] if *m == Method::GET => {
            Ok(Out::json(audit::list_contexts(state, r.href, r.query)?))
        }
        ["audit", "metadata", "filters"] if *m == Method::GET => Ok(Out::json(audit::filters())),
        ["audit", id, "events"] if *m == Method::GET => {
            check_id(id)?;
            Ok(Out::json(audit::context_events(
                state, id, r.href, r.query,
            )?))
        }
        ["entity", ty, id, "audit"] if *m == Method::GET => {
            known(ty)?;
            check_id(id)?;
            Ok(Out::json(audit::entity_events(
                state, ty, id, r.href, r.query,
            )?))
        }
        ["entity", "customentity", rest @ ..] => customentity(state, r, rest),
        ["entity", "assortment"] if *m == Method::GET => assortment(state, r),
        ["entity", ty] => {
            known(ty)?;
            match *m {
                Method::GET => list(state, r, ty, state.all(ty).collect()),
                Method::POST => create_or_bulk(state, r, ty),
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        ["entity", ty, "metadata"] if *m == Method::GET => metadata(state, r, ty),
        ["entity", ty, "metadata", "attributes"] => {
            known(kinds::attribute_owner(ty))?;
            match *m {
                Method::GET => {
                    let rows = state
                        .attributes
                        .get(kinds::attribute_owner(ty))
                        .cloned()
                        .unwrap_or_default();
                    Ok(Out::json(plain_list(r, "attributemetadata", rows)))
                }
                Method::POST => match r.body()? {
                    Value::Array(items) => {
                        let mut out = Vec::new();
                        for i in items {
                            out.push(state.create_attribute(ty, i)?);
                        }
                        Ok(Out::json(Value::Array(out)))
                    }
                    b => Ok(Out::json(state.create_attribute(ty, b)?)),
                },
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        ["entity", ty, "metadata", "attributes", id] if *m == Method::GET => state
            .resolve(&Target::Attribute(ty.to_string(), id.to_string()))
            .cloned()
            .map(Out::json)
            .ok_or_else(|| errors::not_found("attributemetadata", id)),
        ["entity", ty, "metadata", "states"] => {
            known(ty)?;
            match *m {
                Method::GET => Ok(Out::json(Value::Array(
                    state.states.get(*ty).cloned().unwrap_or_default(),
                ))),
                Method::POST => match r.body()? {
                    Value::Array(items) => {
                        let mut out = Vec::new();
                        for i in items {
                            out.push(state.create_state(ty, i)?);
                        }
                        Ok(Out::json(Value::Array(out)))
                    }
                    b => Ok(Out::json(state.create_state(ty, b)?)),
                },
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        ["entity", ty, "metadata", "states", id] => match *m {
            Method::GET => state
                .resolve(&Target::State(ty.to_string(), id.to_string()))
                .cloned()
                .map(Out::json)
                .ok_or_else(|| errors::not_found("state", id)),
            Method::PUT => Ok(Out::json(state.update_state(ty, id, r.body()?)?)),
            Method::DELETE => {
                state.delete_state(ty, id)?;
                Ok(Out::with_events(None, vec![]))
            }
            _ => Err(errors::method_not_allowed(m.as_str())),
        },
        ["entity", ty, "delete"] if *m == Method::POST => {
            known(ty)?;
            bulk_delete(state, r, ty)
        }
        ["entity", ty, "syncid", sync] => {
            known(ty)?;
            let id = state
                .find_by_sync_id(ty, sync)
                .ok_or_else(|| errors::not_found(ty, sync))?;
            match *m {
                Method::DELETE => {
                    let ev = state.delete(ty, &id, &r.ctx)?;
                    Ok(Out::with_events(None, vec![ev]))
                }
                Method::GET => {
                    let e = state
                        .get(ty, &id)
                        .cloned()
                        .ok_or_else(|| errors::not_found(ty, &id))?;
                    Ok(Out::json(state.render(
                        &e,
                        &r.expand(),
                        &Links::compute(state),
                    )))
                }
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        ["entity", ty, id] => {
            known(ty)?;
            check_id(id)?;
            match *m {
                Method::GET => {
                    let e = state
                        .get(ty, id)
                        .cloned()
                        .ok_or_else(|| errors::not_found(ty, id))?;
                    let links = Links::compute(state);
                    let mut v = state.render(&e, &r.expand(), &links);
                    if r.param("fields")
                        .is_some_and(|f| f.split(',').any(|x| x.trim() == "stock"))
                    {
                        stock::add_position_stock(state, &mut v, &links);
                    }
                    Ok(Out::json(v))
                }
                Method::PUT => {
                    if r.body()?.is_array() {
                        return Err(errors::array_not_allowed());
                    }
                    let (stored, ev) = state.update(ty, id, r.body()?, &r.ctx)?;
                    let v = state.render(&stored, &r.expand(), &Links::compute(state));
                    Ok(Out::with_events(Some(v), ev.into_iter().collect()))
                }
                Method::DELETE => {
                    let ev = state.delete(ty, id, &r.ctx)?;
                    Ok(Out::with_events(None, vec![ev]))
                }
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        ["entity", ty, id, field] => {
            let kind = known(ty)?;
            check_id(id)?;
            if !kind.nested.iter().any(|(f, _)| f == field) {
                return Err(errors::unknown_path(&r.segs.join("/")));
            }
            match *m {
                Method::GET => {
                    let rows = nested_rows(state, r, ty, id, field)?;
                    let meta_type = kind
                        .nested
                        .iter()
                        .find(|(f, _)| f == field)
                        .map_or("", |(_, t)| *t);
                    Ok(Out::json(plain_list(r, meta_type, rows)))
                }
                Method::POST => {
                    let (added, ev) = state.add_nested(ty, id, field, r.body()?, &r.ctx)?;
                    let body = if r.body()?.is_array() {
                        Value::Array(added)
                    } else {
                        added.into_iter().next().unwrap_or(Value::Null)
                    };
                    Ok(Out::with_events(Some(body), ev.into_iter().collect()))
                }
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        ["entity", ty, id, field, "delete"] if *m == Method::POST => {
            known(ty)?;
            check_id(id)?;
            let items = r
                .body()?
                .as_array()
                .ok_or_else(errors::not_object_or_array)?;
            let mut events = Vec::new();
            for i in items {
                let rid = i["meta"]["href"]
                    .as_str()
                    .map(id_of)
                    .ok_or_else(|| errors::meta_without_href("meta"))?
                    .to_string();
                if let Some(ev) = state.delete_nested(ty, id, field, &rid, &r.ctx)? {
                    events.push(ev);
                }
            }
            Ok(Out::with_events(None, events))
        }
        ["entity", ty, id, field, row] => {
            known(ty)?;
            check_id(id)?;
            match *m {
                Method::GET => {
                    let rows = nested_rows(state, r, ty, id, field)?;
                    rows.into_iter()
                        .find(|x| x["id"] == json!(row))
                        .map(Out::json)
                        .ok_or_else(|| errors::not_found(field, row))
                }
                Method::PUT => {
                    let (v, ev) = state.update_nested(ty, id, field, row, r.body()?, &r.ctx)?;
                    Ok(Out::with_events(Some(v), ev.into_iter().collect()))
                }
                Method::DELETE => {
                    let ev = state.delete_nested(ty, id, field, row, &r.ctx)?;
                    Ok(Out::with_events(None, ev.into_iter().collect()))
                }
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        _ => Err(errors::unknown_path(&r.segs.join("/"))),
    }
}

fn nested_rows(
    state: &State,
    r: &Req<'_>,
    ty: &str,
    id: &str,
    field: &str,
) -> Result<Vec<Value>, MsError> {
    let e = state
        .get(ty, id)
        .cloned()
        .ok_or_else(|| errors::not_found(ty, id))?;
    let mut tree = Expand::default();
    tree.0.insert(field.to_string(), r.expand());
    let rendered = state.render(&e, &tree, &Links::compute(state));
    Ok(rendered[field]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// A list response over rows that need no filtering (nested collections, metadata).
fn plain_list(r: &Req<'_>, meta_type: &str, rows: Vec<Value>) -> Value {
    let params = ListParams::from_query(r.query).unwrap_or_default();
    let limit = if params.limit == 0 {
        1000
    } else {
        params.limit
    };
    let size = rows.len();
    let page: Vec<Value> = rows.into_iter().skip(params.offset).take(limit).collect();
    json!({
        "meta": collection_meta(r.href, r.query, meta_type, size, limit, params.offset),
        "rows": page
    })
}

fn list(
    state: &State,
    r: &Req<'_>,
    meta_type: &str,
    candidates: Vec<&Value>,
) -> Result<Out, MsError> {
    let params = ListParams::from_query(r.query)?;
    check_filter(meta_type, &params)?;
    let (page, size) = state.select(candidates, &params)?;
    let links = Links::compute(state);
    let rows: Vec<Value> = page
        .into_iter()
        .map(|e| state.render(e, &params.expand, &links))
        .collect();
    Ok(Out::json(json!({
        "context": state.context(),
        "meta": collection_meta(r.href, r.query, meta_type, size, params.limit, params.offset),
        "rows": rows
    })))
}

/// The account's main group (отдел «Основной»).
fn main_group(state: &State) -> Value {
    let id = super::state::MAIN_GROUP_ID;
    let mut meta = state.entity_meta("group", id);
    if let Some(m) = meta.as_object_mut() {
        m.remove("uuidHref");
    }
    json!({"meta": meta, "id": id, "accountId": state.account_id, "name": "Основной", "index": 0})
}

/// Refuses a filter on a field the type cannot be filtered by (1034), as the API does,
/// instead of answering no rows; the UUID fields (`id`, `accountId`, `syncId`) take only
/// `=` and `!=` (the "Фильтрация" columns).
fn check_filter(ty: &str, params: &ListParams) -> Result<(), MsError> {
    if let Some(c) = params.filter.iter().find(|c| {
        matches!(c.field.as_str(), "id" | "accountId" | "syncId")
            && !matches!(c.op, super::query::Op::Eq | super::query::Op::Ne)
    }) {
        return Err(errors::filter_error(&format!(
            "оператор не поддерживается для поля '{}'",
            c.field
        )));
    }
    match params
        .filter
        .iter()
        .find(|c| !kinds::filterable(ty, &c.field))
    {
        Some(c) => Err(errors::filter_unknown_field(&c.field)),
        None => Ok(()),
    }
}

fn assortment(state: &State, r: &Req<'_>) -> Result<Out, MsError> {
    let mut params = ListParams::from_query(r.query)?;
    check_filter("assortment", &params)?;
    if !params.filter.iter().any(|c| c.field == "archived") {
        // The assortment lists only non-archived items unless asked otherwise.
        params
            .filter
            .extend(super::query::parse_filter("archived=false")?);
    }
    // The rows the filter keeps are selected once per version of the state (a big catalogue
    // is read in many pages); only the page asked for is rendered.
    let mut all = params.clone();
    all.offset = 0;
    all.limit = usize::MAX;
    let selected = state.reports.get_result(
        state.version,
        &stock::cache_key("assortment", r.query),
        || -> Result<Vec<(String, String)>, MsError> {
            let candidates: Vec<&Value> = ["product", "service", "bundle", "variant"]
                .iter()
                .flat_map(|t| state.all(t))
                .collect();
            let (rows, _) = state.select(candidates, &all)?;
            Ok(rows
                .into_iter()
                .filter_map(|e| {
                    let id = e["id"].as_str()?;
                    let ty = ["product", "service", "bundle", "variant"]
                        .into_iter()
                        .find(|t| state.get(t, id).is_some_and(|x| std::ptr::eq(x, e)))?;
                    Some((ty.to_string(), id.to_string()))
                })
                .collect())
        },
    )?;
    let size = selected.len();
    let page: Vec<&Value> = selected
        .iter()
        .skip(params.offset)
        .take(params.limit)
        .filter_map(|(ty, id)| state.get(ty, id))
        .collect();
    let links = Links::compute(state);
    let totals = stock::totals(state);
    let rows: Vec<Value> = page
        .into_iter()
        .map(|e| {
            let mut v = state.render(e, &params.expand, &links);
            if kinds::find(e["meta"]["type"].as_str().unwrap_or("")).is_some_and(|k| k.stocked) {
                if let (Value::Object(o), Value::Object(s)) = (
                    &mut v,
                    stock::assortment_stock(&totals, e["id"].as_str().unwrap_or("")),
                ) {
                    o.extend(s);
                }
            }
            v
        })
        .collect();
    Ok(Out::json(json!({
        "context": state.context(),
        "meta": collection_meta(r.href, r.query, "assortment", size, params.limit, params.offset),
        "rows": rows
    })))
}

fn create_or_bulk(state: &mut State, r: &Req<'_>, ty: &str) -> Result<Out, MsError> {
    let expand = r.expand();
    match r.body()? {
        Value::Array(items) => {
            if items.len() > 1000 {
                return Err(errors::too_many_objects());
            }
            let mut results = Vec::with_capacity(items.len());
            let mut events = Vec::new();
            for item in items {
                let res = match item["meta"]["href"].as_str() {
                    Some(href) => {
                        let id = id_of(href).to_string();
                        let mut patch = item.clone();
                        if let Some(o) = patch.as_object_mut() {
                            o.remove("meta");
                        }
                        state.update(ty, &id, &patch, &r.ctx)
                    }
                    None => match state.refused(ty, item) {
                        Some(e) => Err(e),
                        None => state.create(ty, item, &r.ctx),
                    },
                };
                match res {
                    Ok((stored, ev)) => {
                        events.extend(ev);
                        results.push(Ok(stored));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            let links = Links::compute(state);
            let body: Vec<Value> = results
                .into_iter()
                .map(|res| match res {
                    Ok(stored) => state.render(&stored, &expand, &links),
                    Err(e) => e.body(),
                })
                .collect();
            Ok(Out::with_events(Some(Value::Array(body)), events))
        }
        body => {
            if let Some(e) = state.refused(ty, body) {
                return Err(e);
            }
            let (stored, ev) = state.create(ty, body, &r.ctx)?;
            let v = state.render(&stored, &expand, &Links::compute(state));
            Ok(Out::with_events(Some(v), ev.into_iter().collect()))
        }
    }
}

fn bulk_delete(state: &mut State, r: &Req<'_>, ty: &str) -> Result<Out, MsError> {
    let items = r
        .body()?
        .as_array()
        .ok_or_else(errors::not_object_or_array)?;
    if items.len() > 1000 {
        return Err(errors::too_many_objects());
    }
    let mut out = Vec::new();
    let mut events = Vec::new();
    for i in items {
        let Some(href) = i["meta"]["href"].as_str() else {
            out.push(errors::meta_without_href("meta").body());
            continue;
        };
        let id = id_of(href).to_string();
        match state.delete(ty, &id, &r.ctx) {
            Ok(ev) => {
                events.push(ev);
                out.push(json!({"info": format!("Сущность '{ty}' с UUID: {id} успешно удалена")}));
            }
            Err(e) => out.push(e.with_meta(&i["meta"]).body()),
        }
    }
    Ok(Out::with_events(Some(Value::Array(out)), events))
}

fn metadata(state: &State, r: &Req<'_>, ty: &str) -> Result<Out, MsError> {
    let kind = known(ty)?;
    let owner = kinds::attribute_owner(ty);
    let attrs = state.attributes.get(owner).cloned().unwrap_or_default();
    let mut attributes = json!({"meta": {
        "href": format!("{}/entity/{owner}/metadata/attributes", state.base_url),
        "type": "attributemetadata",
        "mediaType": "application/json",
        "size": attrs.len(),
        "limit": 1000,
        "offset": 0
    }});
    if r.expand().get("attributes").is_some() {
        attributes["rows"] = Value::Array(attrs);
    }
    let mut out = json!({
        "meta": {"href": format!("{}/entity/{ty}/metadata", state.base_url), "mediaType": "application/json"},
        "attributes": attributes,
        "createShared": false
    });
    if kind.states {
        out["states"] = Value::Array(state.states.get(ty).cloned().unwrap_or_default());
    }
    Ok(Out::json(out))
}

fn company_metadata(state: &State) -> Value {
    let b = &state.base_url;
    let dicts: Vec<Value> = state
        .all("customentity")
        .map(|d| {
            let id = d["id"].as_str().unwrap_or("");
            json!({
                "meta": {
                    "href": format!("{b}/context/companysettings/metadata/customEntities/{id}"),
                    "type": "customentitymetadata",
                    "mediaType": "application/json"
                },
                "attributes": {"meta": {
                    "href": format!("{b}/entity/customentity/{id}/metadata/attributes"),
                    "type": "attributemetadata",
                    "mediaType": "application/json",
                    "size": 0, "limit": 1000, "offset": 0
                }},
                "entityMeta": {
                    "href": format!("{b}/entity/customentity/{id}"),
                    "type": "customentity",
                    "mediaType": "application/json"
                },
                "id": id,
                "name": d["name"],
                "createShared": true
            })
        })
        .collect();
    json!({
        "meta": {"href": format!("{b}/context/companysettings"), "mediaType": "application/json"},
        "customEntities": dicts
    })
}

fn customentity(state: &mut State, r: &Req<'_>, rest: &[&str]) -> Result<Out, MsError> {
    let m = r.method;
    match rest {
        [] => match *m {
            Method::POST => Ok(Out::json(state.create_dictionary(r.body()?)?)),
            _ => Err(errors::method_not_allowed(m.as_str())),
        },
        [dict] => {
            check_id(dict)?;
            if state.get("customentity", dict).is_none() {
                return Err(errors::not_found("customentity", dict));
            }
            match *m {
                Method::GET => {
                    let key = format!("customentity:{dict}");
                    list(state, r, "customentity", state.all(&key).collect())
                }
                Method::POST => match r.body()? {
                    Value::Array(items) => {
                        let mut out = Vec::new();
                        let mut events = Vec::new();
                        for i in items {
                            match state.create_element(dict, i, &r.ctx) {
                                Ok((v, ev)) => {
                                    out.push(v);
                                    events.push(ev);
                                }
                                Err(e) => out.push(e.body()),
                            }
                        }
                        Ok(Out::with_events(Some(Value::Array(out)), events))
                    }
                    b => {
                        let (v, ev) = state.create_element(dict, b, &r.ctx)?;
                        Ok(Out::with_events(Some(v), vec![ev]))
                    }
                },
                Method::DELETE => {
                    let href = format!(
                        "{}/context/companysettings/metadata/customEntities/{dict}",
                        state.base_url
                    );
                    let used = state
                        .attributes
                        .values()
                        .flatten()
                        .any(|a| a["customEntityMeta"]["href"] == json!(href));
                    if used {
                        return Err(MsError::new(
                            StatusCode::PRECONDITION_FAILED,
                            1090,
                            "Дополнительный справочник используется и не может быть удален",
                        ));
                    }
                    if let Some(map) = state.entities.get_mut("customentity") {
                        map.shift_remove(*dict);
                    }
                    state.entities.remove(&format!("customentity:{dict}"));
                    Ok(Out::with_events(None, vec![]))
                }
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        [dict, "metadata"] if *m == Method::GET => {
            check_id(dict)?;
            if state.get("customentity", dict).is_none() {
                return Err(errors::not_found("customentity", dict));
            }
            Ok(Out::json(json!({
                "meta": {"href": format!("{}/entity/customentity/{dict}/metadata", state.base_url), "mediaType": "application/json"},
                "attributes": {"meta": {
                    "href": format!("{}/entity/customentity/{dict}/metadata/attributes", state.base_url),
                    "type": "attributemetadata", "mediaType": "application/json",
                    "size": 0, "limit": 1000, "offset": 0
                }},
                "createShared": true
            })))
        }
        [dict, id] => {
            check_id(dict)?;
            check_id(id)?;
            match *m {
                Method::GET => state
                    .resolve(&Target::Element(dict.to_string(), id.to_string()))
                    .cloned()
                    .map(Out::json)
                    .ok_or_else(|| errors::not_found("customentity", id)),
                Method::PUT => {
                    let (v, ev) = state.update_element(dict, id, r.body()?, &r.ctx)?;
                    Ok(Out::with_events(Some(v), ev.into_iter().collect()))
                }
                Method::DELETE => {
                    let ev = state.delete_element(dict, id)?;
                    Ok(Out::with_events(None, vec![ev]))
                }
                _ => Err(errors::method_not_allowed(m.as_str())),
            }
        }
        _ => Err(errors::unknown_path(&r.segs.join("/"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_detection() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("deflate"));
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
    }
}
