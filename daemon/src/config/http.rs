//! The `http:` section: the operator HTTP server (`/healthz`, `/readyz`, `/metrics`, the
//! status pages), which runs whether or not МойСклад webhooks are on.
//!
//! ```yaml
//! http:
//!   listen: 127.0.0.1:8089     # default: webhooks.listen (one listener serves both)
//!   enabled: true              # false: no operator server (the webhook receiver, if on, still serves /status)
//!   operator_token: "…"        # or SKLADSYNC_OPERATOR_TOKEN; default: the webhook secret
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::Secret;

/// The shortest operator token accepted.
pub const MIN_OPERATOR_TOKEN: usize = 16;

/// `http:` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the operator server listens. Unset: `webhooks.listen`, so that a config written
    /// before this section existed keeps one listener with everything on it.
    pub listen: Option<SocketAddr>,
    /// Run the operator server (default on).
    pub enabled: bool,
    /// The token of the operator pages and `/metrics` (or `SKLADSYNC_OPERATOR_TOKEN`). Unset:
    /// the webhook secret (configured, or the one generated and kept in the state).
    pub operator_token: Secret,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            enabled: true,
            operator_token: Secret::default(),
        }
    }
}

impl HttpConfig {
    /// What is wrong with the section, each with its key.
    pub fn problems(&self) -> Vec<String> {
        let t = self.operator_token.expose();
        if t.is_empty() {
            return Vec::new();
        }
        let safe = t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
        if t.len() < MIN_OPERATOR_TOKEN || t.len() > 128 || !safe {
            vec![format!(
                "http.operator_token (or SKLADSYNC_OPERATOR_TOKEN) must be {MIN_OPERATOR_TOKEN} \
                 to 128 URL-safe characters (letters, digits, - _ . ~)"
            )]
        } else {
            Vec::new()
        }
    }
}
