//! The HTTP face of the emulator: key check, rate limit, request log, routing to the
//! entity modules, and the `success` envelope.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::catalog;
use super::changes::render_record;
use super::config::EmulatorConfig;
use super::customers::{self, Sub};
use super::model::{Actor, Failure, HistoryRecord, State};
use super::orders::{self, PaymentsShape};
use super::params::{decode_pairs, Params};

/// One request as the emulator received it (for assertions: encoding, batching, retries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, percent-decoded.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Decoded form pairs (form-encoded bodies only).
    pub form: Vec<(String, String)>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The `X-API-KEY` header, if sent.
    pub api_key_header: Option<String>,
    /// The status the emulator answered with.
    pub status: u16,
}

impl RecordedRequest {
    /// A form field.
    pub fn form_field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A form field parsed as JSON (entity fields are JSON strings).
    pub fn form_json(&self, name: &str) -> Option<Value> {
        serde_json::from_str(self.form_field(name)?).ok()
    }

    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Request times of one key within the last second.
#[derive(Debug, Default)]
struct Window {
    /// Requests accepted (they count against the limit).
    accepted: VecDeque<Instant>,
    /// Every request that reached the key check (for [`Inner::peak_per_second`]).
    received: VecDeque<Instant>,
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
    {
        q.pop_front();
    }
}

/// Mutable emulator data behind one lock.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub state: State,
    pub requests: Vec<RecordedRequest>,
    /// When each of `requests` was received (same order).
    pub request_times: Vec<Instant>,
    pub rate_limited: u64,
    /// The most requests received with one key in any one second (refused ones included).
    pub peak_per_second: usize,
    windows: HashMap<String, Window>,
}

impl Inner {
    pub fn new(state: State) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }
}

/// What the router shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub inner: Mutex<Inner>,
    pub config: EmulatorConfig,
}

impl Shared {
    /// The lock; a panic in another holder leaves plain data behind, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The axum handler behind every path.
pub(crate) async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().map(decode_pairs).unwrap_or_default();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let form = if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        decode_pairs(&String::from_utf8_lossy(&body))
    } else {
        Vec::new()
    };
    let header_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let mut rec = RecordedRequest {
        method: method.to_string(),
        path: format!("/{}", segments.join("/")),
        query,
        form,
        content_type,
        api_key_header: header_key,
        status: 0,
    };
    let (status, body) = {
        let mut inner = shared.lock();
        let received = Instant::now();
        let result = process(&mut inner, &shared.config, &method, &segments, &rec);
        let (status, body) = match result {
            Ok(ok) => ok,
            Err(f) => (f.status, f.body()),
        };
        rec.status = status;
        inner.requests.push(rec);
        inner.request_times.push(received);
        (status, body)
    };
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

fn process(
    inner: &mut Inner,
    config: &EmulatorConfig,
    method: &Method,
    segments: &[String],
    rec: &RecordedRequest,
) -> Result<(u16, Value), Failure> {
    let mut pairs = rec.query.clone();
    pairs.extend(rec.form.iter().cloned());
    let params = Params::new(pairs);
    let key = rec
        .api_key_header
        .clone()
        .or_else(|| params.get("apiKey").map(str::to_string));
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(Failure::new(403, "\"apiKey\" is missing."));
    };
    let Some(key_cfg) = config.api_keys.iter().find(|k| k.key == key) else {
        return Err(Failure::new(403, "Wrong \"apiKey\" value."));
    };
    {
        let now = Instant::now();
        let w = inner.windows.entry(key.clone()).or_default();
        prune(&mut w.received, now);
        prune(&mut w.accepted, now);
        w.received.push_back(now);
        let received = w.received.len();
        let refused = config
            .rate_limit
            .as_ref()
            .filter(|limit| w.accepted.len() >= limit.per_second.max(1) as usize);
        if refused.is_none() {
            w.accepted.push_back(now);
        }
        inner.peak_per_second = inner.peak_per_second.max(received);
        if let Some(limit) = refused {
            inner.rate_limited += 1;
            return Err(Failure::new(limit.status, "Rate limit exceeded"));
        }
    }
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ctx = Ctx {
        actor: Actor::Api(key.clone()),
        key: &key,
        params: &params,
        config,
        scopes: &key_cfg.scopes,
        sites: key_cfg.sites.as_deref(),
    };
    match segs.as_slice() {
        ["api", "api-versions"] if method == Method::GET => Ok((
            200,
            json!({"success": true, "versions": ["3.0", "4.0", "5.0"]}),
        )),
        ["api", "credentials"] if method == Method::GET => Ok((200, credentials(&ctx))),
        ["api", "system-info"] if method == Method::GET => Ok((
            200,
            json!({"success": true, "systemVersion": "8.0.0-emulator", "publicUrl": "http://127.0.0.1", "technicalUrl": "http://127.0.0.1"}),
        )),
        ["api", "v5", rest @ ..] => {
            if method == Method::GET {
                get_v5(&inner.state, &ctx, rest)
            } else if method == Method::POST {
                post_v5(&mut inner.state, &ctx, rest)
            } else {
                Err(Failure::new(405, "Method Not Allowed"))
            }
        }
        _ => Err(Failure::new(404, "API method not found")),
    }
}

struct Ctx<'a> {
    actor: Actor,
    key: &'a str,
    params: &'a Params,
    config: &'a EmulatorConfig,
    scopes: &'a [String],
    sites: Option<&'a [String]>,
}

fn credentials(ctx: &Ctx<'_>) -> Value {
    let mut m = Map::new();
    m.insert("success".into(), json!(true));
    m.insert("scopes".into(), json!(ctx.scopes));
    m.insert(
        "credentials".into(),
        json!([
            "/api/v5/orders",
            "/api/v5/orders/create",
            "/api/v5/orders/{externalId}/edit",
            "/api/v5/orders/history",
            "/api/v5/customers",
            "/api/v5/store/inventories/upload"
        ]),
    );
    match ctx.sites {
        None => {
            m.insert("siteAccess".into(), json!("access_full"));
        }
        Some(s) => {
            m.insert("siteAccess".into(), json!("access_selective"));
            m.insert("sitesAvailable".into(), json!(s));
        }
    }
    Value::Object(m)
}

fn page(items: Vec<Value>, key: &str, params: &Params) -> Result<(u16, Value), Failure> {
    let (limit, page) = params.paging()?;
    let total = items.len();
    let pages = total.div_ceil(limit);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .collect();
    let mut m = Map::new();
    m.insert("success".into(), json!(true));
    m.insert(
        "pagination".into(),
        json!({"limit": limit, "totalCount": total, "currentPage": page, "totalPageCount": pages}),
    );
    m.insert(key.into(), Value::Array(slice));
    Ok((200, Value::Object(m)))
}

fn history(
    records: &[HistoryRecord],
    entity_key: &str,
    id_filters: (&str, &str),
    ctx: &Ctx<'_>,
    now: String,
) -> Result<(u16, Value), Failure> {
    let f = ctx.params.filter();
    let known = [
        "sinceId",
        "startDate",
        "endDate",
        id_filters.0,
        id_filters.1,
    ];
    orders::check_filters(&f, &known)?;
    let since = f.get("sinceId").map(|v| {
        super::model::as_i64(Some(v)).ok_or_else(|| {
            Failure::input("filter[sinceId]", "This value should be of type integer.")
        })
    });
    let since = match since {
        Some(r) => Some(r?),
        None => None,
    };
    let by_id = super::model::as_i64(f.get(id_filters.0));
    let by_ext = super::model::as_string(f.get(id_filters.1));
    let items: Vec<Value> = records
        .iter()
        .filter(|r| since.is_none_or(|s| r.id > s))
        .filter(|r| orders::in_range(Some(&r.created_at), f.get("startDate"), f.get("endDate")))
        .filter(|r| by_id.is_none_or(|id| r.entity_id == id))
        .filter(|r| {
            by_ext
                .as_deref()
                .is_none_or(|x| r.entity_external_id.as_deref() == Some(x))
        })
        .map(|r| render_record(r, entity_key, Some(ctx.key)))
        .collect();
    let (code, mut body) = page(items, "history", ctx.params)?;
    if let Some(m) = body.as_object_mut() {
        let hist = m.remove("history").unwrap_or(json!([]));
        let pag = m.remove("pagination").unwrap_or(Value::Null);
        m.insert("generatedAt".into(), json!(now));
        m.insert("history".into(), hist);
        m.insert("pagination".into(), pag);
    }
    Ok((code, body))
}

fn one(key: &str, v: Value) -> (u16, Value) {
    let mut m = Map::new();
    m.insert("success".into(), json!(true));
    m.insert(key.into(), v);
    (200, Value::Object(m))
}

fn by_of(p: &Params) -> Result<bool, Failure> {
    p.by_id("by")
}

fn get_v5(st: &State, ctx: &Ctx<'_>, rest: &[&str]) -> Result<(u16, Value), Failure> {
    let p = ctx.params;
    let site = p.get("site");
    let now = st.peek_now();
    match rest {
        ["orders"] => {
            let list = orders::list_orders(st, &p.filter())?;
            let rendered = list
                .into_iter()
                .map(|o| orders::render_order(st, o, PaymentsShape::Map))
                .collect();
            page(rendered, "orders", p)
        }
        ["orders", "history"] => history(
            &st.order_history,
            "order",
            ("orderId", "orderExternalId"),
            ctx,
            now,
        ),
        ["orders", "statuses"] => {
            let ids: Vec<String> = p
                .tree
                .get("ids")
                .map(super::params::strings)
                .unwrap_or_default();
            let exts: Vec<String> = p
                .tree
                .get("externalIds")
                .map(super::params::strings)
                .unwrap_or_default();
            if ids.is_empty() && exts.is_empty() {
                return Err(
                    Failure::new(400, "Errors in the input parameters").with_errors(
                        json!({"ids": "Set one of the following parameters: ids, externalIds"}),
                    ),
                );
            }
            let rows: Vec<Value> = st
                .orders
                .iter()
                .filter(|o| {
                    super::model::as_string(o.get("id")).is_some_and(|i| ids.contains(&i))
                        || super::model::as_string(o.get("externalId")).is_some_and(|x| exts.contains(&x))
                })
                .map(|o| {
                    let status = o.get("status").cloned().unwrap_or(Value::Null);
                    let group = status
                        .as_str()
                        .and_then(|s| st.references.statuses.get(s))
                        .and_then(|s| s.get("group").cloned())
                        .unwrap_or(Value::Null);
                    json!({"id": o.get("id"), "externalId": o.get("externalId"), "status": status, "group": group})
                })
                .collect();
            Ok(one("orders", Value::Array(rows)))
        }
        ["orders", id] => {
            let idx = orders::find_order(st, id, by_of(p)?, site).ok_or_else(Failure::not_found)?;
            Ok(one(
                "order",
                orders::render_order(st, &st.orders[idx], PaymentsShape::Map),
            ))
        }
        ["customers"] => {
            let list = customers::list_customers(st, &p.filter())?;
            page(
                list.into_iter()
                    .map(|c| customers::render_customer(st, c))
                    .collect(),
                "customers",
                p,
            )
        }
        ["customers", "history"] => history(
            &st.customer_history,
            "customer",
            ("customerId", "customerExternalId"),
            ctx,
            now,
        ),
        ["customers", id] => {
            let idx =
                customers::find_customer(st, id, by_of(p)?, site).ok_or_else(Failure::not_found)?;
            Ok(one(
                "customer",
                customers::render_customer(st, &st.customers[idx]),
            ))
        }
        ["customers-corporate"] => {
            let list = customers::list_corporate(st, &p.filter())?;
            page(
                list.into_iter()
                    .map(|c| customers::render_corporate(st, c))
                    .collect(),
                "customersCorporate",
                p,
            )
        }
        ["customers-corporate", "history"] => history(
            &st.corporate_history,
            "customer",
            ("customerId", "customerExternalId"),
            ctx,
            now,
        ),
        ["customers-corporate", id] => {
            let idx = customers::find_corporate(st, id, by_of(p)?, site)
                .ok_or_else(Failure::not_found)?;
            Ok(one(
                "customerCorporate",
                customers::render_corporate(st, &st.corporate[idx]),
            ))
        }
        ["customers-corporate", id, sub @ ("contacts" | "companies" | "addresses")] => {
            let idx = customers::find_corporate(st, id, by_of(p)?, site)
                .ok_or_else(Failure::not_found)?;
            let (which, key) = sub_of(sub);
            page(customers::list_sub(&st.corporate[idx], which), key, p)
        }
        ["reference", book] => {
            let (key, v) = catalog::reference(st, book)
                .ok_or_else(|| Failure::new(404, "API method not found"))?;
            Ok(one(key, v))
        }
        ["users"] => page(catalog::users(st, &p.filter())?, "users", p),
        ["users", id] => {
            let u = st
                .users
                .iter()
                .find(|u| super::model::as_string(u.get("id")).as_deref() == Some(*id))
                .ok_or_else(Failure::not_found)?;
            Ok(one("user", u.clone()))
        }
        ["custom-fields"] => page(catalog::custom_fields(st, &p.filter())?, "customFields", p),
        ["custom-fields", "dictionaries"] => {
            page(st.custom_dictionaries.clone(), "customDictionaries", p)
        }
        ["custom-fields", "dictionaries", code] => {
            let d = st
                .custom_dictionaries
                .iter()
                .find(|d| d.get("code").and_then(Value::as_str) == Some(*code))
                .ok_or_else(Failure::not_found)?;
            Ok(one("customDictionary", d.clone()))
        }
        ["custom-fields", entity, code] => {
            let c = st
                .custom_fields
                .iter()
                .find(|c| {
                    c.get("entity").and_then(Value::as_str) == Some(*entity)
                        && c.get("code").and_then(Value::as_str) == Some(*code)
                })
                .ok_or_else(Failure::not_found)?;
            Ok(one("customField", c.clone()))
        }
        ["store", "inventories"] => page(catalog::inventories(st, &p.filter())?, "offers", p),
        ["store", "offers"] => {
            let (limit, n) = p.paging()?;
            let (rows, total) = catalog::offers_page(st, &p.filter(), (n - 1) * limit, limit)?;
            let mut m = Map::new();
            m.insert("success".into(), json!(true));
            m.insert(
                "pagination".into(),
                json!({"limit": limit, "totalCount": total, "currentPage": n,
                       "totalPageCount": total.div_ceil(limit)}),
            );
            m.insert("offers".into(), Value::Array(rows));
            Ok((200, Value::Object(m)))
        }
        ["store", "products"] => page(catalog::products(st, &p.filter())?, "products", p),
        ["tasks"] => page(catalog::tasks(st, &p.filter())?, "tasks", p),
        ["tasks", id] => {
            let t = st
                .tasks
                .iter()
                .find(|t| super::model::as_string(t.get("id")).as_deref() == Some(*id))
                .ok_or_else(Failure::not_found)?;
            Ok(one("task", t.clone()))
        }
        ["settings"] => Ok(one(
            "settings",
            json!({
                "default_currency": {"value": "RUB"},
                "system_language": {"value": "RU"},
                "timezone": {"value": ctx.config.timezone}
            }),
        )),
        _ => Err(Failure::new(404, "API method not found")),
    }
}

fn sub_of(sub: &str) -> (Sub, &'static str) {
    match sub {
        "contacts" => (Sub::Contacts, "contacts"),
        "companies" => (Sub::Companies, "companies"),
        _ => (Sub::Addresses, "addresses"),
    }
}

fn created(id: i64) -> (u16, Value) {
    (201, json!({"success": true, "id": id}))
}

fn post_v5(st: &mut State, ctx: &Ctx<'_>, rest: &[&str]) -> Result<(u16, Value), Failure> {
    let p = ctx.params;
    let site = p.get("site");
    let actor = &ctx.actor;
    match rest {
        ["orders", "create"] => {
            let order = p.json("order")?;
            let id = orders::create_order(st, actor, &order, site)?;
            let idx = orders::find_order(st, &id.to_string(), true, None)
                .ok_or_else(Failure::not_found)?;
            let rendered = orders::render_order(st, &st.orders[idx], PaymentsShape::Array);
            Ok((201, json!({"success": true, "id": id, "order": rendered})))
        }
        ["orders", "payments", "create"] => {
            let payment = p.json("payment")?;
            Ok(created(orders::create_payment(st, actor, &payment, site)?))
        }
        ["orders", "payments", id, "edit"] => {
            let payment = p.json("payment")?;
            // Payments are addressed by id unless `by=externalId` is sent.
            let by_id = p.get("by") != Some("externalId");
            let pid = orders::edit_payment(st, actor, id, by_id, &payment)?;
            Ok((200, json!({"success": true, "id": pid})))
        }
        ["orders", "payments", id, "delete"] => {
            let pid = id.parse::<i64>().map_err(|_| Failure::not_found())?;
            orders::delete_payment(st, actor, pid)?;
            Ok((200, json!({"success": true})))
        }
        ["orders", id, "edit"] => {
            let order = p.json("order")?;
            let idx = orders::find_order(st, id, by_of(p)?, site).ok_or_else(Failure::not_found)?;
            orders::edit_order(st, actor, idx, &order)?;
            let rendered = orders::render_order(st, &st.orders[idx], PaymentsShape::Map);
            let oid = rendered.get("id").cloned().unwrap_or(Value::Null);
            Ok((200, json!({"success": true, "id": oid, "order": rendered})))
        }
        ["customers", "create"] => {
            let c = p.json("customer")?;
            Ok(created(customers::create_customer(st, actor, &c, site)?))
        }
        ["customers", id, "edit"] => {
            let c = p.json("customer")?;
            let idx =
                customers::find_customer(st, id, by_of(p)?, site).ok_or_else(Failure::not_found)?;
            customers::edit_customer(st, actor, idx, &c)?;
            let cid = st.customers[idx].get("id").cloned().unwrap_or(Value::Null);
            Ok((200, json!({"success": true, "id": cid})))
        }
        ["customers-corporate", "create"] => {
            let c = p.json("customerCorporate")?;
            Ok(created(customers::create_corporate(st, actor, &c, site)?))
        }
        ["customers-corporate", id, "edit"] => {
            let c = p.json("customerCorporate")?;
            let idx = customers::find_corporate(st, id, by_of(p)?, site)
                .ok_or_else(Failure::not_found)?;
            customers::edit_corporate(st, actor, idx, &c)?;
            let cid = st.corporate[idx].get("id").cloned().unwrap_or(Value::Null);
            Ok((200, json!({"success": true, "id": cid})))
        }
        ["customers-corporate", id, sub @ ("contacts" | "companies" | "addresses"), "create"] => {
            let (which, _) = sub_of(sub);
            let field = match which {
                Sub::Contacts => "contact",
                Sub::Companies => "company",
                Sub::Addresses => "address",
            };
            let body = p.json(field)?;
            let idx = customers::find_corporate(st, id, by_of(p)?, site)
                .ok_or_else(Failure::not_found)?;
            Ok(created(customers::create_sub(
                st, actor, idx, which, &body,
            )?))
        }
        ["customers-corporate", id, sub @ ("contacts" | "companies" | "addresses"), entity, "edit"] =>
        {
            let (which, _) = sub_of(sub);
            let field = match which {
                Sub::Contacts => "contact",
                Sub::Companies => "company",
                Sub::Addresses => "address",
            };
            let body = p.json(field)?;
            let idx = customers::find_corporate(st, id, by_of(p)?, site)
                .ok_or_else(Failure::not_found)?;
            let entity_by_id = p.by_id("entityBy")?;
            let eid = customers::edit_sub(st, actor, idx, which, entity, entity_by_id, &body)?;
            Ok((200, json!({"success": true, "id": eid})))
        }
        ["store", "inventories", "upload"] => {
            let offers = p.json("offers")?;
            Ok((
                200,
                catalog::upload_inventories(st, &offers, ctx.config.inventory_batch_limit)?,
            ))
        }
        ["tasks", "create"] => {
            let task = p.json("task")?;
            Ok(created(catalog::create_task(st, &task, site)?))
        }
        ["tasks", id, "edit"] => {
            let task = p.json("task")?;
            let tid = catalog::edit_task(st, id, &task)?;
            Ok((200, json!({"success": true, "id": tid})))
        }
        _ => Err(Failure::new(404, "API method not found")),
    }
}

/// The rendered history of a feed as seen by `reader_key`.
pub(crate) fn render_feed(
    records: &[HistoryRecord],
    entity_key: &str,
    reader_key: Option<&str>,
) -> Vec<Value> {
    records
        .iter()
        .map(|r| render_record(r, entity_key, reader_key))
        .collect()
}
