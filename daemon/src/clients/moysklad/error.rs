//! Errors of the МойСклад client, typed by what the caller can do about them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One element of МойСклад's `errors[]` (`md/_general.md`, "СТРУКТУРА ОБЪЕКТА error").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// The title; always present.
    #[serde(default)]
    pub error: String,
    /// МойСклад error code (e.g. 3006 uniqueness, 1049 rate limit); absent means "see the HTTP
    /// status".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// The field or parameter that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// An extra message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Link to the docs.
    #[serde(default, rename = "moreInfo", skip_serializing_if = "Option::is_none")]
    pub more_info: Option<String>,
    /// Line in the request JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
    /// Column in the request JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<i64>,
    /// The entity the error is about (bulk responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// Entities that block a delete (error 1028).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "[{c}] {}", self.error)?,
            None => write!(f, "{}", self.error)?,
        }
        if let Some(p) = &self.parameter {
            write!(f, " (parameter '{p}')")?;
        }
        Ok(())
    }
}

/// Reads `errors[]` from an error body: `{"errors": [...]}` or, for bulk requests, an array of
/// such objects. Anything else yields no errors.
pub fn parse_errors(body: &Value) -> Vec<ApiError> {
    let one = |v: &Value| -> Vec<ApiError> {
        v.get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| serde_json::from_value::<ApiError>(e.clone()).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    match body {
        Value::Array(items) => items.iter().flat_map(one).collect(),
        other => one(other),
    }
}

fn summary(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        return "no error body".into();
    }
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What went wrong talking to МойСклад.
///
/// The transport variants tell the caller whether a write may have happened:
/// [`MoyskladError::Connect`] means the request never reached the server (safe to retry),
/// [`MoyskladError::NoResponse`] means it was sent but no usable response came back, so the
/// server may or may not have applied it (re-read, or retry only with a `syncId`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoyskladError {
    /// The request never reached the server (connection refused, DNS, TLS…).
    #[error("cannot connect to МойСклад for {method} {path}: {source}")]
    Connect {
        /// HTTP method.
        method: String,
        /// Path relative to the base URL (no query string).
        path: String,
        /// The transport error (its URL stripped).
        #[source]
        source: reqwest::Error,
    },
    /// The request was sent but no usable response arrived (dropped connection, timeout,
    /// broken body): the outcome on the server is unknown.
    #[error("no response from МойСклад to {method} {path}; it may or may not have been applied: {source}")]
    NoResponse {
        /// HTTP method.
        method: String,
        /// Path relative to the base URL (no query string).
        path: String,
        /// The transport error (its URL stripped).
        #[source]
        source: reqwest::Error,
    },
    /// МойСклад answered with an error status and (usually) `errors[]`.
    #[error("МойСклад answered {status} to {method} {path}: {}", summary(errors))]
    Api {
        /// HTTP method.
        method: String,
        /// Path relative to the base URL (no query string).
        path: String,
        /// HTTP status.
        status: u16,
        /// The parsed errors (empty when the body had none, e.g. 415).
        errors: Vec<ApiError>,
    },
    /// Still rate limited (429) after the configured number of waits.
    #[error(
        "МойСклад kept rate-limiting {method} {path} (429): {}",
        summary(errors)
    )]
    RateLimited {
        /// HTTP method.
        method: String,
        /// Path relative to the base URL (no query string).
        path: String,
        /// The last advertised wait.
        retry_after: Option<Duration>,
        /// The parsed errors (1049 or 1073).
        errors: Vec<ApiError>,
    },
    /// A success status with a body that is not the expected JSON.
    #[error("cannot decode МойСклад's answer to {method} {path} ({status}): {source}")]
    Decode {
        /// HTTP method.
        method: String,
        /// Path relative to the base URL (no query string).
        path: String,
        /// HTTP status.
        status: u16,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The caller asked for something the client cannot send (bad entity name, bad id…).
    #[error("invalid МойСклад request: {0}")]
    InvalidRequest(String),
    /// The client configuration is unusable.
    #[error("invalid МойСклад client configuration: {0}")]
    Config(String),
}

impl MoyskladError {
    /// The HTTP status, when МойСклад answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            MoyskladError::Api { status, .. } | MoyskladError::Decode { status, .. } => {
                Some(*status)
            }
            MoyskladError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The parsed `errors[]`.
    pub fn errors(&self) -> &[ApiError] {
        match self {
            MoyskladError::Api { errors, .. } | MoyskladError::RateLimited { errors, .. } => errors,
            _ => &[],
        }
    }

    /// The МойСклад codes of all errors.
    pub fn codes(&self) -> Vec<i64> {
        self.errors().iter().filter_map(|e| e.code).collect()
    }

    /// Whether any error has this МойСклад code.
    pub fn has_code(&self, code: i64) -> bool {
        self.errors().iter().any(|e| e.code == Some(code))
    }

    /// Whether the request was sent but the outcome is unknown (no usable response: the
    /// connection dropped, or the call ran out of time after the request was sent).
    pub fn is_no_response(&self) -> bool {
        matches!(self, MoyskladError::NoResponse { .. })
    }

    /// Whether the call ran out of time (connecting or waiting for the answer).
    pub fn is_timeout(&self) -> bool {
        match self {
            MoyskladError::Connect { source, .. } | MoyskladError::NoResponse { source, .. } => {
                source.is_timeout()
            }
            _ => false,
        }
    }

    /// Whether the server answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_object_and_array_error_bodies() {
        let one = json!({"errors": [{"error": "x", "code": 3006, "parameter": "name",
                          "moreInfo": "https://dev.moysklad.ru/doc/api/remap/1.2/#error_3006"}]});
        let e = parse_errors(&one);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, Some(3006));
        assert_eq!(e[0].parameter.as_deref(), Some("name"));
        let many = json!([{"errors": [{"error": "a", "code": 1}]}, {"errors": [{"error": "b"}]}]);
        assert_eq!(parse_errors(&many).len(), 2);
        assert!(parse_errors(&json!({"rows": []})).is_empty());
    }

    #[test]
    fn codes_and_status() {
        let e = MoyskladError::Api {
            method: "POST".into(),
            path: "entity/customerorder".into(),
            status: 412,
            errors: vec![ApiError {
                error: "dup".into(),
                code: Some(3006),
                ..ApiError::default()
            }],
        };
        assert!(e.has_code(3006));
        assert_eq!(e.codes(), vec![3006]);
        assert_eq!(e.status(), Some(412));
        assert!(!e.is_no_response());
        assert!(e.to_string().contains("[3006] dup"));
    }
}
