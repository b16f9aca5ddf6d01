//! The fleet's one HTTP server.
//!
//! | route | what |
//! |---|---|
//! | `/pairs/<id>/…` | everything a single-pair daemon serves, for pair `id`: `POST …/moysklad/webhook/<secret>/<instance>`, `GET …/status/<secret>`, `GET …/healthz`, `…/readyz`, `…/metrics`, `…/ui/<token>`, `POST …/admin/reload`, `GET …/admin/plan` (each with that pair's secrets) |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | 200 when every pair runs and is ready, else 503 with the reasons per pair |
//! | `GET /metrics` | every pair's metrics, each sample labelled `pair="<id>"` (operator or admin token) |
//! | `GET /pairs` | the pairs and what they do (operator or admin token) |
//! | `PUT /admin/pairs/<id>` | writes the pair file (body: its YAML) and starts or restarts the pair (admin token) |
//! | `DELETE /admin/pairs/<id>` | removes the pair file and stops the pair (admin token) |
//! | `POST /admin/pairs/rescan` | reads the pairs directory again (admin token) |
//!
//! An unknown pair is 404, as a wrong secret is. The accept loop and its abuse limits are the
//! daemon's (`receiver:` of the base config).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::json;
use tower::ServiceExt;

use super::Fleet;

/// The routes of the shared server.
pub(super) fn router(fleet: Fleet) -> Router {
    let max_body = fleet.inner.config.receiver.max_body.0;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/pairs", get(list))
        .route("/admin/pairs/rescan", post(rescan))
        .route("/admin/pairs/{pair}", put(put_pair).delete(delete_pair))
        // `/pairs/<id>/…`: matched by hand, so that the pair's router sees no path
        // parameters of this one.
        .fallback(to_pair)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(fleet)
}

/// `/pairs/<id>/<rest>`: the pair's own router, with the path it knows (`/<rest>`); anything
/// else is 404.
async fn to_pair(State(fleet): State<Fleet>, req: Request) -> Response {
    let Some((pair, rest)) = req
        .uri()
        .path()
        .strip_prefix("/pairs/")
        .and_then(|p| p.split_once('/'))
        .map(|(pair, rest)| (pair.to_string(), rest.to_string()))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(router) = fleet.running_pair(&pair).map(|r| r.router.clone()) else {
        return not_served(&fleet, &pair, &rest, req).await;
    };
    let (mut parts, body) = req.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    parts.uri = uri;
    match router.oneshot(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// A request for a pair this runner does not serve: a МойСклад webhook for a pair another
/// runner serves (this one waits for its lease) is relayed to it through the shared state;
/// anything else for such a pair is 503 (served elsewhere), for an unknown pair 404.
async fn not_served(fleet: &Fleet, pair: &str, rest: &str, req: Request) -> Response {
    let segs: Vec<&str> = rest.split('/').collect();
    let webhook = match segs.as_slice() {
        ["moysklad", "webhook", secret] => Some((*secret, None)),
        ["moysklad", "webhook", secret, instance] => Some((*secret, Some(*instance))),
        _ => None,
    };
    let waiting = fleet
        .inner
        .waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(pair);
    let Some((secret, instance)) = webhook.filter(|_| req.method() == axum::http::Method::POST)
    else {
        return if waiting {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        };
    };
    let request_id = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "requestId")
            .map(|(_, v)| v.to_string())
    });
    let (secret, instance) = (secret.to_string(), instance.map(str::to_string));
    let max = fleet.inner.config.receiver.max_body.0;
    let Ok(body) = axum::body::to_bytes(req.into_body(), max).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match fleet
        .relay_webhook(pair, &secret, instance.as_deref(), &body, request_id)
        .await
    {
        Some(status) => status.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Whether the request carries the operator token or the admin token of the fleet (`admin`:
/// only the admin token).
fn allowed(fleet: &Fleet, headers: &HeaderMap, admin: bool) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return false;
    };
    let c = &fleet.inner.config;
    let same = |s: &crate::config::Secret| !s.is_empty() && same(s.expose(), given);
    same(&c.admin_token) || (!admin && same(&c.operator_token))
}

/// Compares two secrets without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn healthz() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"status": "alive"})),
    )
        .into_response()
}

async fn readyz(State(fleet): State<Fleet>) -> Response {
    let f = fleet.clone();
    let shared = fleet.inner.config.state.backend == crate::config::StateBackend::Postgres;
    let why = tokio::task::spawn_blocking(move || {
        let mut why: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in f.pairs() {
            if let Some(e) = p.error {
                why.entry(p.id.clone()).or_default().push(e);
            } else if p.starting && !p.running && !shared {
                // (With the state in PostgreSQL a pair being started is mostly a pair another
                // runner holds, this one waiting for its lease: a standby is ready.)
                why.entry(p.id.clone()).or_default().push("starting".into());
            } else if let Some(d) = f.pair(&p.id) {
                let reasons = d.not_ready();
                if !reasons.is_empty() {
                    why.insert(p.id.clone(), reasons);
                }
            }
        }
        why
    })
    .await
    .unwrap_or_else(|e| BTreeMap::from([("fleet".to_string(), vec![e.to_string()])]));
    let status = if why.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"ready": why.is_empty(), "reasons": why})),
    )
        .into_response()
}

async fn list(State(fleet): State<Fleet>, headers: HeaderMap) -> Response {
    if !allowed(&fleet, &headers, false) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(json!({"pairs": fleet.pairs()})).into_response()
}

async fn metrics(State(fleet): State<Fleet>, headers: HeaderMap) -> Response {
    if !allowed(&fleet, &headers, false) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let f = fleet.clone();
    let text = tokio::task::spawn_blocking(move || {
        let mut families = Families::default();
        for p in f.pairs() {
            let Some(d) = f.pair(&p.id) else { continue };
            match d.encode_metrics() {
                Ok(text) => families.add(&p.id, &text),
                Err(e) => tracing::warn!(pair = %p.id, error = %e, "cannot encode the metrics"),
            }
        }
        families.render()
    })
    .await;
    match text {
        Ok(t) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Metric families gathered from every pair's text, each sample labelled with its pair.
#[derive(Default)]
struct Families {
    /// Family name → (its `#` lines, its samples), in the order first seen.
    order: Vec<String>,
    by_name: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

impl Families {
    fn add(&mut self, pair: &str, text: &str) {
        let mut current = String::new();
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                let (_kind, name) = (words.next(), words.next().unwrap_or_default());
                current = name.to_string();
                let entry = self.family(&current);
                if !entry.0.iter().any(|l| l == line) {
                    entry.0.push(line.to_string());
                }
                continue;
            }
            let labelled = match line.find(['{', ' ']) {
                Some(i) if line.as_bytes()[i] == b'{' => {
                    let (name, tail) = line.split_at(i + 1);
                    if tail.starts_with('}') {
                        format!("{name}pair=\"{pair}\"{tail}")
                    } else {
                        format!("{name}pair=\"{pair}\",{tail}")
                    }
                }
                Some(i) => {
                    let (name, tail) = line.split_at(i);
                    format!("{name}{{pair=\"{pair}\"}}{tail}")
                }
                None => continue,
            };
            let name = current.clone();
            self.family(&name).1.push(labelled);
        }
    }

    fn family(&mut self, name: &str) -> &mut (Vec<String>, Vec<String>) {
        if !self.by_name.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.by_name.entry(name.to_string()).or_default()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            if let Some((meta, samples)) = self.by_name.get(name) {
                for l in meta.iter().chain(samples) {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

async fn rescan(State(fleet): State<Fleet>, headers: HeaderMap) -> Response {
    if !allowed(&fleet, &headers, true) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(json!({"pairs": fleet.rescan().await})).into_response()
}

/// `PUT /admin/pairs/<id>` with the pair file's YAML: 200 with the pair's status once it
/// started (or failed to: see `error`), 422 when the file does not make a valid config.
async fn put_pair(
    State(fleet): State<Fleet>,
    Path(pair): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !allowed(&fleet, &headers, true) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, fleet.inner.config.receiver.max_body.0).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": "the pair file is not UTF-8 text"})),
        )
            .into_response();
    };
    if let Err(e) = fleet.put_pair_file(&pair, &text) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": e})),
        )
            .into_response();
    }
    let status = fleet.rescan().await.into_iter().find(|p| p.id == pair);
    axum::Json(json!({"pair": status})).into_response()
}

/// `DELETE /admin/pairs/<id>`: 200 once the pair stopped, 404 when there is no such pair file.
async fn delete_pair(
    State(fleet): State<Fleet>,
    Path(pair): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !allowed(&fleet, &headers, true) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match fleet.remove_pair_file(&pair) {
        Ok(true) => {
            fleet.rescan().await;
            axum::Json(json!({"removed": pair})).into_response()
        }
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": e})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::Families;

    #[test]
    fn metrics_of_pairs_are_one_family_each_with_a_pair_label() {
        let a = "# HELP x Things.\n# TYPE x counter\nx_total{system=\"crm\"} 1\n# HELP y Up.\n# TYPE y gauge\ny 3\n# EOF\n";
        let b = "# HELP x Things.\n# TYPE x counter\nx_total{} 2\n# HELP y Up.\n# TYPE y gauge\ny 4\n# EOF\n";
        let mut f = Families::default();
        f.add("a", a);
        f.add("b", b);
        assert_eq!(
            f.render(),
            "# HELP x Things.\n# TYPE x counter\nx_total{pair=\"a\",system=\"crm\"} 1\nx_total{pair=\"b\"} 2\n\
             # HELP y Up.\n# TYPE y gauge\ny{pair=\"a\"} 3\ny{pair=\"b\"} 4\n# EOF\n"
        );
    }
}
