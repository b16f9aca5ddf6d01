//! The ICML catalogue (CAT-02) in the daemon: regenerated every `icml.every` (and at start)
//! into `icml.path`, and served to the CRM (the site's `ymlUrl`) at `GET /icml/<secret>` on
//! the webhook listener. The file is replaced atomically, so a request during a regeneration
//! gets the previous catalogue whole; it is streamed from disk, never read into memory. A
//! failed generation keeps the previous file and is journalled (`ICML_FAILED`). A wrong
//! secret, or no `icml.secret`, gets 404; no catalogue yet gets 503. Nothing here logs the
//! path: it holds the secret.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio::sync::watch;

use super::Daemon;
use crate::icml::IcmlStats;

/// The route serving the catalogue, merged into the listener's router.
pub(super) fn routes() -> Router<Daemon> {
    Router::new().route("/icml/{secret}", get(serve))
}

async fn serve(State(daemon): State<Daemon>, Path(secret): Path<String>) -> Response {
    let cfg = &daemon.inner.config.icml;
    let expected = cfg.secret.expose();
    let Some(path) = cfg.path.as_ref().filter(|_| cfg.enabled) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if expected.is_empty() || secret != expected {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::File::open(path).await {
        Ok(file) => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "60")],
            "the catalogue has not been generated yet",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the ICML catalogue");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

impl Daemon {
    /// Generates the catalogue once, now (what the schedule does).
    pub async fn generate_icml(&self) -> Result<IcmlStats, crate::icml::IcmlError> {
        let cfg = &self.inner.config.icml;
        let path = cfg
            .path
            .as_ref()
            .ok_or_else(|| crate::icml::IcmlError::Options("icml.path is not set".to_string()))?;
        crate::icml::generate(&self.inner.systems.ms, &cfg.options(), path).await
    }

    /// Regenerates the catalogue every `icml.every` while `icml.enabled`.
    pub(super) async fn icml_schedule(self, mut stop: watch::Receiver<bool>) {
        if !self.inner.config.icml.enabled {
            return;
        }
        let every = self.inner.config.icml.every.0;
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                r = crate::clients::moysklad::background(self.generate_icml()) => match r {
                    Ok(s) => tracing::info!(offers = s.offers, categories = s.categories, bytes = s.bytes, skipped = ?s.skipped, "ICML catalogue written"),
                    Err(e) => {
                        tracing::warn!(error = %e, "ICML catalogue not written");
                        let journalled = self.runner_journal(
                            "ICML_FAILED",
                            "error",
                            &format!("the ICML catalogue was not regenerated (the previous one is kept): {e}"),
                            json!({"runner": "icml"}),
                            serde_json::Value::Null,
                        );
                        if let Err(j) = journalled {
                            tracing::error!(error = %j, "cannot journal the ICML failure");
                        }
                    }
                },
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
