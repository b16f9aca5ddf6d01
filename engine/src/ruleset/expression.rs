//! One expression evaluated as a rule listening to an event would see it: the event's
//! names, `event`, `settings` and the rule set's functions, against a world. For trying the
//! language without writing a rule (`skladsync eval`).

use crate::diagnostic::Diagnostics;
use crate::eval::{EvalOptions, Event};
use crate::trace::{Outcome, Trace};
use crate::value::Value;
use crate::world::World;

use super::settings_shape::SettingsShape;
use super::RuleSet;

/// The id of the rule that carries the expression.
const RULE_ID: &str = "skladsync.eval";

/// Why an expression gave no value.
#[derive(Debug, thiserror::Error)]
pub enum ExpressionError {
    /// The rules, the settings or the expression do not compile.
    #[error("{0}")]
    Rules(Diagnostics),
    /// Evaluating it failed.
    #[error("{0}")]
    Eval(String),
}

/// The rule file that holds the expression, as a rule listening to `event`. The
/// expression is a block scalar, so it needs no quoting.
fn rule_file(event: &str, expression: &str) -> String {
    let mut text = format!(
        "rules:\n  - id: {RULE_ID}\n    on: {}\n    when:\n      - check: |-\n",
        serde_json::to_string(event).unwrap_or_default()
    );
    for line in expression.lines() {
        text.push_str("          ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

impl RuleSet {
    /// Evaluates `expression` (shown in diagnostics as the file `name`) against an event
    /// and a world, with the rule files, settings and settings shape given; `overrides`
    /// are merged over the settings. Only the expression runs, none of the rules.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_expression(
        layers: &[super::Layer],
        settings: Option<(&str, &str)>,
        shape: Option<&SettingsShape>,
        name: &str,
        expression: &str,
        event: &Event,
        world: &dyn World,
        overrides: &Value,
    ) -> Result<Value, ExpressionError> {
        let mut all = layers.to_vec();
        all.push(super::Layer {
            name: name.to_owned(),
            files: vec![(name.to_owned(), rule_file(&event.name, expression))],
        });
        let (mut set, _warnings) =
            RuleSet::from_layers(&all, settings, shape).map_err(ExpressionError::Rules)?;
        let Some(index) = set.prog.rules.iter().position(|r| &*r.id == RULE_ID) else {
            return Err(ExpressionError::Eval(
                "the expression was not compiled".into(),
            ));
        };
        let index =
            u32::try_from(index).map_err(|_| ExpressionError::Eval("too many rules".into()))?;
        set.prog
            .rules_by_event
            .insert(event.name.clone(), vec![index]);
        let settings = set.settings_with(overrides);
        let mut trace = Trace::default();
        set.evaluate_with(
            event,
            world,
            EvalOptions {
                settings: Some(&settings),
                trace: Some(&mut trace),
                ..EvalOptions::default()
            },
        )
        .map_err(|e| ExpressionError::Eval(e.to_string()))?;
        let rule = trace.rules.iter().find(|r| r.rule == RULE_ID);
        if let Some(Outcome::Error { message }) = rule.map(|r| &r.outcome) {
            return Err(ExpressionError::Eval(message.clone()));
        }
        rule.and_then(|r| r.conditions.first())
            .map(|c| c.value.clone())
            .ok_or_else(|| ExpressionError::Eval("the expression was not evaluated".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "events:\n  order.changed:\n    fields: {order: the order}\nfunctions:\n  twice(x): x * 2\nrules:\n  - id: other\n    on: order.changed\n    let: {boom: 1 / 0}\n    when: [check: boom > 0]\n    do: []\n";

    fn eval(expr: &str, event: &str) -> Result<Value, ExpressionError> {
        let doc: Value = serde_yaml::from_str(event).unwrap();
        let event = Event::from_document(&doc).unwrap();
        RuleSet::evaluate_expression(
            &[super::super::Layer {
                name: "rules".into(),
                files: vec![("r.yaml".into(), RULES.into())],
            }],
            Some(("settings.yaml", "factor: 3\n")),
            None,
            "expression",
            expr,
            &event,
            &crate::world::EmptyWorld,
            &Value::Null,
        )
    }

    #[test]
    fn evaluates_against_the_event_with_functions_and_settings() {
        let v = eval(
            "order.items | map(i => twice(i.quantity) * settings.factor)",
            "event: order.changed\norder: {items: [{quantity: 1}, {quantity: 2}]}\n",
        )
        .unwrap();
        assert_eq!(v.to_json(), "[6,12]");
    }

    #[test]
    fn errors_are_reported() {
        let Err(ExpressionError::Rules(d)) = eval("ordr.id", "event: order.changed\n") else {
            panic!("an unknown name must not compile");
        };
        assert!(d.render(false).contains("did you mean `order`?"));
        let Err(ExpressionError::Rules(d)) = eval("1", "event: order.chanegd\n") else {
            panic!("an undeclared event must be refused");
        };
        assert!(d.render(false).contains("order.changed"));
        assert!(matches!(
            eval("1 / 0", "event: order.changed\n"),
            Err(ExpressionError::Eval(_))
        ));
    }
}
