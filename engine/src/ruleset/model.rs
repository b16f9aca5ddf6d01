//! The shape of rule files, as serde reads them (and as the JSON Schema describes them).
//!
//! Expressions are kept as text here; [`crate::compile`] parses and checks them, pinning
//! each one to its place in the file.

use std::borrow::Cow;
use std::fmt;

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// One rule file. Every section is optional; a rule set is all the files of a directory.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Events that rules listen to, with the names each one brings into scope.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub events: IndexMap<String, EventDecl>,
    /// Named expressions with parameters, written `name(a, b): expression`. They see
    /// their parameters, `settings` and other functions.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub functions: IndexMap<String, ExprText>,
    /// Named sub-flows that rules call with `use`, passing parameters with `with`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub flows: IndexMap<String, FlowDef>,
    /// The rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleDef>,
    /// Checks of the settings, run when the rule set loads; reported as diagnostics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
    /// Named shapes of documents (see `events.<name>.shapes`): a map of keys to shapes
    /// (`"*"`: any other key), a one-item list `[shape]`, or a word: `any` (free-form),
    /// `string`, `number`, `boolean`, `date`, `null`, or another shape's name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub shapes: IndexMap<String, serde_json::Value>,
    /// In a layer: ids of rules of the layers below that this layer turns off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
}

/// A declared event.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventDecl {
    /// What produces the event and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// The names the event brings into scope, each with a description.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub fields: IndexMap<String, String>,
    /// The shape of fields' documents (a shape, or the name of one under `shapes:`):
    /// `check` warns on a path that no document of the event can have.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub shapes: IndexMap<String, serde_json::Value>,
}

/// A rule: when an event arrives and the conditions hold, the effects are planned.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Unique id, e.g. `order.upload`. Effects in plans name the rule that made them.
    pub id: String,
    /// What the rule does and why (the requirement ids it implements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// The event (or events) the rule listens to.
    pub on: OneOrMany,
    /// Ids attached to every journal entry of this rule (e.g. the order's id and number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<ExprText>,
    /// Named values, in order; each may use the ones before it. Evaluated when first used.
    #[serde(default, rename = "let", skip_serializing_if = "IndexMap::is_empty")]
    pub lets: IndexMap<String, ExprText>,
    /// Conditions, all of which must hold. The first false one stops the rule, and may
    /// journal a coded reason or record a skip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
    /// Effects, in order.
    #[serde(default, rename = "do", skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<EffectDef>,
}

/// A named sub-flow: like a rule without an event, called with parameters.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowDef {
    /// What the flow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// Parameter names, passed by `with:` in the `use`. Missing ones are null.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Named values, as in a rule.
    #[serde(default, rename = "let", skip_serializing_if = "IndexMap::is_empty")]
    pub lets: IndexMap<String, ExprText>,
    /// Conditions. A false condition in a flow stops the whole calling rule: its effects
    /// are dropped and only the journal entry (or skip) of the condition remains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
    /// Effects, in order.
    #[serde(default, rename = "do", skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<EffectDef>,
    /// The value the `use` binds to its `as` name.
    #[serde(default, rename = "return", skip_serializing_if = "Option::is_none")]
    pub returns: Option<ExprText>,
}

/// One event name or several.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One event.
    One(String),
    /// Several events.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names, as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A condition: an expression, or an expression with what to record when it is false.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a condition: an expression, or a map with `check` and optionally `journal` or `skip`"
)]
pub enum Condition {
    /// Just the expression: a false value stops the rule silently.
    Plain(ExprText),
    /// The expression and what a false value records.
    Full(ConditionDef),
}

/// A condition with its reason.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionDef {
    /// The expression that must be true.
    pub check: ExprText,
    /// Why the condition exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// When false: a journal entry with this code (and optionally level and text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalRef>,
    /// When false: a skip effect with this reason (an expression or template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<ExprText>,
}

/// A journal code, or a code with level and text.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a journal code like `STORE_NOT_MAPPED`, or a map with `code`, `level` and `text`"
)]
pub enum JournalRef {
    /// Just the code; level `error`, no text.
    Code(String),
    /// Code, level and text.
    Full(JournalDef),
}

/// A journal entry to write.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalDef {
    /// A stable code, e.g. `STORE_NOT_MAPPED`.
    pub code: String,
    /// `error` (default), `warning` or `info`.
    #[serde(default)]
    pub level: Level,
    /// Human text: an expression or a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<ExprText>,
    /// Ids of the entities concerned; defaults to the rule's `subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<ExprText>,
}

/// Severity of a journal entry or a settings check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something failed.
    #[default]
    Error,
    /// Something is suspicious.
    Warning,
    /// For the record.
    Info,
}

impl Level {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }
}

/// One effect. Exactly one verb (`create`, `update`, `delete`, `link`, `journal`, `task`,
/// `skip`, `use`, `let`, `for` or a bare `do` group) plus the fields that verb takes.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EffectDef {
    /// What this effect is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// Plan the effect only when this is true.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub cond: Option<ExprText>,
    /// Create an entity: `system.entity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<String>,
    /// Update an entity: `system.entity`; needs `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// Delete an entity: `system.entity`; needs `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    /// Link ids of two systems: `kind` plus one id per system, e.g.
    /// `{kind: order, left: order.id, right: created.id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<IndexMap<String, ExprText>>,
    /// Write a journal entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalDef>,
    /// Set a task for a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskDef>,
    /// Record that something was deliberately not done, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<ExprText>,
    /// Call a named flow.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_flow: Option<String>,
    /// Parameters of the `use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<IndexMap<String, ExprText>>,
    /// Bind names now, in order (they may use results of earlier effects).
    #[serde(default, rename = "let", skip_serializing_if = "Option::is_none")]
    pub lets: Option<IndexMap<String, ExprText>>,
    /// Repeat the nested `do` for each item of `in`, bound to this name.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// The list a `for` goes over.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub for_in: Option<ExprText>,
    /// Nested effects (of a `for`, or a group under one `if`).
    #[serde(default, rename = "do", skip_serializing_if = "Option::is_none")]
    pub nested: Option<Vec<EffectDef>>,
    /// Effects of a group when its `if` is false.
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<Vec<EffectDef>>,
    /// Name of the result, for later effects: a `create`/`update` result or a flow's return.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The id of the entity to update or delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ExprText>,
    /// A deterministic idempotency key of a create, so applying it twice creates once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ExprText>,
    /// The body: a map whose values are expressions (keys whose value is null are left
    /// out), or one expression giving the whole body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<serde_yaml::Value>,
    /// When true, a failure of this effect does not block the effects after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A task for a user.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    /// The user (an expression).
    pub user: ExprText,
    /// The kind of problem: one open task per kind.
    pub kind: String,
    /// The text of the task (an expression or template).
    pub text: ExprText,
}

/// A settings check.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckDef {
    /// A stable id, shown with the diagnostic.
    pub id: String,
    /// Why the check exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// An expression over `settings` that must be true.
    pub check: ExprText,
    /// `error` (the settings cannot be used) or `warning`.
    #[serde(default)]
    pub level: Level,
    /// The message shown when the check fails (an expression or template).
    pub message: ExprText,
    /// The settings key the diagnostic points at, e.g. `settings.moves.post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The text of an expression. In YAML it may be a string, a number, a boolean or null;
/// a string containing `{{` or `{%` is a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExprText(pub String);

impl fmt::Display for ExprText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

std::thread_local! {
    /// The texts of the expressions read on this thread while [`collect_expressions`] runs.
    static COLLECTED: std::cell::RefCell<Option<Vec<String>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `read` (a rule file read into its model), returning with its result the text of
/// every expression written as text that it read, so they can be parsed where the file was
/// read (see `ruleset::read_rule_files`).
pub(crate) fn collect_expressions<T>(read: impl FnOnce() -> T) -> (T, Vec<String>) {
    let outer = COLLECTED.with(|c| c.replace(Some(Vec::new())));
    let result = read();
    let texts = COLLECTED.with(|c| c.replace(outer)).unwrap_or_default();
    (result, texts)
}

fn collected(text: &str) {
    COLLECTED.with(|c| {
        if let Some(texts) = c.borrow_mut().as_mut() {
            texts.push(text.to_owned());
        }
    });
}

impl<'de> Deserialize<'de> for ExprText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ExprText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ExprText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an expression (a string, number, boolean or null)")
            }
            fn visit_str<E>(self, s: &str) -> Result<ExprText, E> {
                collected(s);
                Ok(ExprText(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<ExprText, E> {
                collected(&s);
                Ok(ExprText(s))
            }
            fn visit_bool<E>(self, b: bool) -> Result<ExprText, E> {
                Ok(ExprText(b.to_string()))
            }
            fn visit_i64<E>(self, i: i64) -> Result<ExprText, E> {
                Ok(ExprText(i.to_string()))
            }
            fn visit_u64<E>(self, u: u64) -> Result<ExprText, E> {
                Ok(ExprText(u.to_string()))
            }
            fn visit_f64<E>(self, f: f64) -> Result<ExprText, E> {
                Ok(ExprText(crate::value::number_from_f64(f).to_text()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExprText, E> {
                Ok(ExprText("null".to_owned()))
            }
            fn visit_none<E: de::Error>(self) -> Result<ExprText, E> {
                Ok(ExprText("null".to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ExprText {
    fn schema_name() -> Cow<'static, str> {
        "Expression".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An expression of the skladsync language, e.g. `order.items | map(i => i.quantity)`; a string containing `{{` is a minijinja template.",
            "type": ["string", "number", "boolean", "null"]
        })
    }
}
