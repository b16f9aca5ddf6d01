//! Why each rule fired or not: recorded during evaluation for `explain` and coverage.

use serde::Serialize;

use crate::value::Value;

/// What happened to every rule that listened to the event.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Trace {
    /// One entry per rule that listened, in evaluation order.
    pub rules: Vec<RuleTrace>,
}

/// What happened to one rule.
#[derive(Clone, Debug, Serialize)]
pub struct RuleTrace {
    /// The rule id.
    pub rule: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Every condition evaluated, with its value, in order (flows' conditions included).
    pub conditions: Vec<ConditionTrace>,
    /// Every named value, with its value (or the error computing it).
    pub lets: Vec<LetTrace>,
    /// How many effects it added to the plan.
    pub effects: usize,
    /// Every effect `if:` evaluated (flows' included), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<BranchTrace>,
}

/// One evaluated effect guard (`if:` on an effect or a group of effects).
#[derive(Clone, Debug, Serialize)]
pub struct BranchTrace {
    /// The flow it belongs to, if not the rule itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Its text.
    pub text: String,
    /// `path:line:col`.
    pub location: String,
    /// Whether it held (the effects under it ran; else their `else:`, if any).
    pub holds: bool,
}

/// How a rule ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// All conditions held; its effects are in the plan.
    Fired,
    /// A condition of the rule was false.
    Stopped {
        /// Index of the condition in `when`.
        condition: usize,
        /// The journal code it recorded, if any.
        journal: Option<String>,
    },
    /// A condition of a flow the rule used was false; the rule's effects were dropped.
    Aborted {
        /// The flow.
        flow: String,
        /// Index of the condition in the flow's `when`.
        condition: usize,
        /// The journal code it recorded, if any.
        journal: Option<String>,
    },
    /// The evaluation failed.
    Error {
        /// The error.
        message: String,
    },
}

/// One evaluated condition.
#[derive(Clone, Debug, Serialize)]
pub struct ConditionTrace {
    /// The flow it belongs to, if not the rule itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Its index in `when`.
    pub index: usize,
    /// Its text.
    pub text: String,
    /// `path:line:col`.
    pub location: String,
    /// What it evaluated to.
    pub value: Value,
    /// Whether that counts as true.
    pub holds: bool,
    /// When false: the journal code it recorded, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// When false: the journal text or skip reason it recorded, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One named value.
#[derive(Clone, Debug, Serialize)]
pub struct LetTrace {
    /// The flow it belongs to, if not the rule itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The name.
    pub name: String,
    /// Its value, when it could be computed.
    pub value: Option<Value>,
    /// Why it could not, otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Trace {
    pub(crate) fn record_let(&mut self, flow: Option<&str>, name: &str, value: &Value) {
        if let Some(rule) = self.rules.last_mut() {
            if !rule
                .lets
                .iter()
                .any(|l| l.name == name && l.flow.as_deref() == flow)
            {
                rule.lets.push(LetTrace {
                    flow: flow.map(str::to_owned),
                    name: name.to_owned(),
                    value: Some(value.clone()),
                    error: None,
                });
            }
        }
    }
}
