//! Plans: what the rules decided, as data. The runner applies them; tests snapshot them;
//! `diff` compares them.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ruleset::model::Level;
use crate::value::{Str, Value};

/// The effects an event calls for, in the order they must be applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The event that was evaluated.
    pub event: String,
    /// The effects.
    pub effects: Vec<Effect>,
}

/// One effect, tagged with the rule (and flow) that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The rule that planned it.
    pub rule: Str,
    /// The flow it was planned in, when a rule called one with `use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Str>,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

/// What an effect does. Ids may be `{"$ref": "name.path"}`: the result of an earlier
/// effect of the same plan, resolved when the plan is applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Action {
    /// Create an entity.
    Create {
        /// The system, e.g. the first part of `create: system.entity`.
        system: Str,
        /// The entity kind.
        entity: Str,
        /// The plan-unique name later effects use to refer to the result.
        #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
        name: Option<Str>,
        /// A deterministic idempotency key: applying the effect twice creates once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// The body to send.
        body: Value,
        /// Whether a failure must not block the effects after it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        optional: bool,
    },
    /// Update an entity.
    Update {
        /// The system.
        system: Str,
        /// The entity kind.
        entity: Str,
        /// The id of the entity.
        id: Value,
        /// The plan-unique name of the result.
        #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
        name: Option<Str>,
        /// The fields to change.
        body: Value,
        /// Whether a failure must not block the effects after it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        optional: bool,
    },
    /// Delete an entity.
    Delete {
        /// The system.
        system: Str,
        /// The entity kind.
        entity: Str,
        /// The id of the entity.
        id: Value,
        /// Whether a failure must not block the effects after it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        optional: bool,
    },
    /// Remember that ids in two systems are the same thing.
    Link {
        /// The kind of link.
        kind: Str,
        /// One id per system, in the order the rule names them.
        ids: IndexMap<Str, Value, crate::value::Hasher>,
    },
    /// Write a journal entry.
    Journal {
        /// A stable code.
        code: Str,
        /// How serious.
        level: Level,
        /// Human text.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        /// Ids of the entities concerned.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        subject: Value,
    },
    /// Set a task for a user (one open task per kind).
    Task {
        /// The user.
        user: Value,
        /// The kind of problem.
        kind: Str,
        /// The text.
        text: String,
    },
    /// Something deliberately not done, and why.
    Skip {
        /// The reason.
        reason: String,
    },
}

impl Action {
    /// The operation name: `create`, `update`, `delete`, `link`, `journal`, `task`, `skip`.
    pub fn op(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Update { .. } => "update",
            Action::Delete { .. } => "delete",
            Action::Link { .. } => "link",
            Action::Journal { .. } => "journal",
            Action::Task { .. } => "task",
            Action::Skip { .. } => "skip",
        }
    }
}

impl Plan {
    /// The plan as YAML (deterministic).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render plan: {e}\n"))
    }

    /// The plan as pretty JSON (deterministic).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("\"cannot render plan: {e}\""))
    }
}
