//! The МойСклад webhook receiver (axum): `POST /moysklad/webhook/<secret>?requestId=…`, and
//! `GET /status/<secret>` (the journal, the work waiting, counters) for operators.
//!
//! МойСклад gives a receiver 1.5 s, retries 3 times at once, then drops the notification. So
//! the handler only queues work (durably) and answers; a worker does the rest. A `requestId`
//! already handled is acknowledged without queueing again. A wrong secret gets 404, as if
//! nothing lived there. Nothing here logs the path: it holds the secret.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value as Json;
use tokio::sync::watch;

use crate::state::{Source, Work};
use crate::world::lookups::ms_safe;

use super::{now_ms, Daemon, DEDUPE_TTL_MS};

/// Starts serving on `listener` until `stop` turns true.
pub(super) fn spawn(
    daemon: Daemon,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/moysklad/webhook/{secret}", post(receive))
        .route("/status/{secret}", get(status))
        .merge(super::icml::routes())
        .with_state(daemon);
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "webhook receiver stopped");
        }
    })
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
    daemon.inner.webhook_url.as_deref().is_some_and(|url| {
        !secret.is_empty() && url.ends_with(&format!("/moysklad/webhook/{secret}"))
    })
}

/// `GET /status/<secret>`: the journal (newest first), the work waiting, the counters.
async fn status(
    State(daemon): State<Daemon>,
    Path(secret): Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !secret_ok(&daemon, &secret) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let d = daemon.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<Json, crate::state::StateError> {
        let journal = d.state().journal_entries(d.journal_limits(), now_ms())?;
        let inbox = d.state().inbox()?;
        let stats = d.stats();
        Ok(serde_json::json!({
            "journal": journal,
            "waiting": inbox.iter().map(|(seq, i)| serde_json::json!({
                "seq": seq, "subject": i.work.subject(), "attempts": i.attempts,
                "not_before": i.not_before, "last_error": i.last_error,
                "plan": i.plan, "parked": i.parked,
            })).collect::<Vec<_>>(),
            "rules_version": d.rules_version(),
            "events": stats.events,
            "effects": stats.effects,
            "links": stats.links,
            "failures": stats.failures,
            "parked": stats.parked,
            "gave_up": stats.gave_up,
        }))
    })
    .await;
    match body {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

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
    let queued = tokio::task::spawn_blocking(move || -> Result<usize, crate::state::StateError> {
        let now = now_ms();
        if let Some(r) = &request_id {
            if d.state().request_seen(r, now)? {
                return Ok(0);
            }
        }
        let works = works_of(&d, &json, request_id.as_deref());
        let n = works.len();
        d.enqueue(works)?;
        if let Some(r) = &request_id {
            d.state().mark_request(r, now + DEDUPE_TTL_MS)?;
        }
        Ok(n)
    })
    .await;
    match queued {
        Ok(Ok(n)) => {
            tracing::debug!(events = n, "webhook queued");
            StatusCode::OK
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
