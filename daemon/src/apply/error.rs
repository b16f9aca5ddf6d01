//! Why an effect failed, and what can be done about it.

use serde_json::{json, Value};

use crate::clients::moysklad::MoyskladError;
use crate::clients::retailcrm;
use crate::state::StateError;

/// An effect that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// МойСклад refused or could not be reached.
    #[error(transparent)]
    Moysklad(#[from] MoyskladError),
    /// МойСклад refused a create sent in a bulk POST, or the bulk POST failed (the same
    /// error for every create it carried).
    #[error(transparent)]
    MoyskladBatch(std::sync::Arc<MoyskladError>),
    /// retailCRM refused or could not be reached.
    #[error(transparent)]
    Crm(#[from] retailcrm::Error),
    /// The effect itself is unusable (unknown target, missing id, unresolved reference).
    #[error("{0}")]
    Invalid(String),
    /// An answer did not have the expected shape.
    #[error("unexpected answer: {0}")]
    Answer(String),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

fn ms_class(e: &MoyskladError) -> FailureClass {
    match e {
        MoyskladError::Connect { .. }
        | MoyskladError::NoResponse { .. }
        | MoyskladError::RateLimited { .. }
        | MoyskladError::Decode { .. } => FailureClass::Transient,
        MoyskladError::Api { status, .. } => match *status {
            401 | 403 => FailureClass::Auth,
            s if s >= 500 || s == 429 => FailureClass::Transient,
            _ => FailureClass::Refused,
        },
        MoyskladError::InvalidRequest(_) => FailureClass::Invalid,
        _ => FailureClass::Refused,
    }
}

/// What kind of failure it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// It may go away by itself (network, 5xx, rate limit, lost answer): retry soon.
    Transient,
    /// The credentials were refused: a `sync.problem` of kind `auth`.
    Auth,
    /// The system refused the request (4xx): a `sync.problem` of kind `api`.
    Refused,
    /// The plan asked for something impossible: a `sync.problem` of kind `plan`.
    Invalid,
}

impl FailureClass {
    /// The problem kind rules see (`problem.kind`).
    pub fn kind(self) -> &'static str {
        match self {
            FailureClass::Transient => "unavailable",
            FailureClass::Auth => "auth",
            FailureClass::Refused => "api",
            FailureClass::Invalid => "plan",
        }
    }
}

impl ApplyError {
    /// The МойСклад error inside, if it is one.
    pub fn moysklad(&self) -> Option<&MoyskladError> {
        match self {
            ApplyError::Moysklad(e) => Some(e),
            ApplyError::MoyskladBatch(e) => Some(e),
            _ => None,
        }
    }

    /// The class of the failure.
    pub fn class(&self) -> FailureClass {
        if let Some(e) = self.moysklad() {
            return ms_class(e);
        }
        match self {
            ApplyError::Moysklad(e) => ms_class(e),
            ApplyError::Crm(e) => match e.status() {
                Some(401 | 403) => FailureClass::Auth,
                Some(s) if s >= 500 || s == 429 => FailureClass::Transient,
                Some(_) => FailureClass::Refused,
                None => match e {
                    retailcrm::Error::InvalidInput(_) => FailureClass::Invalid,
                    retailcrm::Error::Config(_) => FailureClass::Invalid,
                    _ => FailureClass::Transient,
                },
            },
            ApplyError::Invalid(_) => FailureClass::Invalid,
            ApplyError::Answer(_) | ApplyError::State(_) | ApplyError::MoyskladBatch(_) => {
                FailureClass::Transient
            }
        }
    }

    /// Whether the request may have been applied although no answer arrived.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ApplyError::Moysklad(e) => e.is_no_response(),
            ApplyError::MoyskladBatch(e) => e.is_no_response(),
            ApplyError::Crm(e) => e.is_outcome_unknown(),
            _ => false,
        }
    }

    /// The system concerned.
    pub fn system(&self) -> &'static str {
        match self {
            ApplyError::Moysklad(_) | ApplyError::MoyskladBatch(_) => "moysklad",
            ApplyError::Crm(_) => "crm",
            _ => "runner",
        }
    }

    /// A stable code for the journal and `sync.problem`.
    pub fn code(&self) -> &'static str {
        match (self.system(), self.class()) {
            ("moysklad", FailureClass::Auth) => "MS_AUTH_FAILED",
            ("crm", FailureClass::Auth) => "CRM_AUTH_FAILED",
            ("moysklad", FailureClass::Transient) => "MS_UNAVAILABLE",
            ("crm", FailureClass::Transient) => "CRM_UNAVAILABLE",
            ("moysklad", _) => "MS_API_ERROR",
            ("crm", _) => "CRM_API_ERROR",
            (_, FailureClass::Transient) => "RUNNER_ERROR",
            _ => "PLAN_ERROR",
        }
    }

    /// The API's own error, for the journal (`raw`).
    pub fn raw(&self) -> Value {
        if let Some(e) = self.moysklad() {
            let errors = serde_json::to_value(e.errors()).unwrap_or(Value::Null);
            return json!({"status": e.status(), "errors": errors});
        }
        match self {
            ApplyError::Moysklad(e) => {
                let errors = serde_json::to_value(e.errors()).unwrap_or(Value::Null);
                json!({"status": e.status(), "errors": errors})
            }
            ApplyError::Crm(e) => match e {
                retailcrm::Error::Api { status, api, .. } => {
                    json!({"status": status, "body": api.raw})
                }
                retailcrm::Error::Http { status, body, .. } => {
                    json!({"status": status, "body": body})
                }
                _ => Value::Null,
            },
            _ => Value::Null,
        }
    }
}
