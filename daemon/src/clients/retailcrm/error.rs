//! Errors of the retailCRM client: the API's `success`/`errorMsg`/`errors` envelope, transport
//! failures, and the one failure a sync must treat specially: a write that was sent but whose
//! answer never arrived ([`Error::NoResponse`]).

use serde_json::Value;

/// One entry of the envelope's `errors`, which retailCRM sends either as an object
/// (`field path -> message`) or as an array of messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path (`customer`, `items[0].offer.id`, ...) when `errors` was an object.
    pub field: Option<String>,
    /// The message.
    pub message: String,
}

/// An error envelope as retailCRM sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// `errorMsg`, e.g. `Not found`, `Errors in the entity format`.
    pub message: String,
    /// `errors`, normalized (object or array); empty when absent.
    pub errors: Vec<FieldError>,
    /// The whole response body as received, for the journal.
    pub raw: Value,
}

impl ApiError {
    /// Reads an envelope. Returns `None` when the body is not a JSON object.
    pub fn from_body(raw: Value) -> Option<Self> {
        let obj = raw.as_object()?;
        let message = match obj.get("errorMsg") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let errors = match obj.get("errors") {
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| FieldError {
                    field: Some(k.clone()),
                    message: text_of(v),
                })
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| FieldError {
                    field: None,
                    message: text_of(v),
                })
                .collect(),
            Some(Value::String(s)) => vec![FieldError {
                field: None,
                message: s.clone(),
            }],
            _ => Vec::new(),
        };
        Some(Self {
            message,
            errors,
            raw,
        })
    }

    /// True when retailCRM refused a create because the `externalId` is taken
    /// (`Order with externalId already exists.` and the like, in `errorMsg` or `errors`).
    pub fn is_duplicate_external_id(&self) -> bool {
        let hit = |s: &str| s.contains("already exists");
        hit(&self.message) || self.errors.iter().any(|e| hit(&e.message))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            f.write_str("(no errorMsg)")?;
        } else {
            f.write_str(&self.message)?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            match &e.field {
                Some(field) => write!(f, "{field}: {}", e.message)?,
                None => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Everything the retailCRM client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// retailCRM answered with its error envelope (`success: false`), after any retries.
    #[error("retailCRM {method} {path} answered HTTP {status}: {api}")]
    Api {
        /// HTTP method.
        method: String,
        /// Request path (no query, no key).
        path: String,
        /// HTTP status.
        status: u16,
        /// The envelope (boxed: errors stay small on the happy path).
        api: Box<ApiError>,
    },
    /// An error status whose body is not retailCRM's envelope (a proxy page, an empty body).
    #[error("retailCRM {method} {path} answered HTTP {status} without an API envelope: {body}")]
    Http {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A write was sent but no answer arrived (connection dropped, timeout): retailCRM may or
    /// may not have applied it. Reconcile (e.g. read by `externalId`) before repeating it.
    #[error(
        "retailCRM {method} {path}: request sent but no response received; the outcome is unknown"
    )]
    NoResponse {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// retailCRM could not be reached (after retries). Nothing was applied.
    #[error("retailCRM {method} {path}: network error after {attempts} attempt(s)")]
    Network {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// How many times the request was tried.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A successful status with a body that is not the expected JSON.
    #[error("retailCRM {method} {path}: unexpected response: {detail}")]
    Decode {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The caller passed something the API cannot take (bad entity kind, unserializable body).
    #[error("invalid retailCRM request: {0}")]
    InvalidInput(String),
    /// The client configuration is unusable (bad base URL, ...).
    #[error("invalid retailCRM client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The API envelope, when retailCRM answered with one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Api { api, .. } => Some(api.as_ref()),
            _ => None,
        }
    }

    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for `404` / `Not found`.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when a create was refused because the `externalId` is already taken.
    pub fn is_duplicate_external_id(&self) -> bool {
        self.api_error()
            .is_some_and(|a| a.is_duplicate_external_id())
    }

    /// True when a write may or may not have been applied ([`Error::NoResponse`]): the
    /// connection dropped, or the call ran out of time after the request was sent.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::NoResponse { .. })
    }

    /// True when the call ran out of time (connecting or waiting for the answer).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Network { source, .. } | Error::NoResponse { source, .. } => source.is_timeout(),
            _ => false,
        }
    }
}
