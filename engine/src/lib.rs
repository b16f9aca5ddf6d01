//! The skladsync rules engine.
//!
//! Rule files (YAML) declare what should happen when an event arrives; expressions in them
//! are written in a small language (grammar in `grammar/expr.pest`). A [`RuleSet`] is
//! loaded and compiled once, then evaluates events into [`Plan`]s: ordered effects, each
//! naming the rule that made it. Evaluation does no I/O; what the rules need to know about
//! the systems comes through a [`World`].
//!
//! ```
//! use skladsync_engine::{Event, RecordedWorld, RuleSet, Value};
//!
//! let rules = r#"
//! events:
//!   order.placed:
//!     fields: {order: the order}
//! rules:
//!   - id: order.copy
//!     on: order.placed
//!     when:
//!       - check: order.total > 0
//!         journal: EMPTY_ORDER
//!     do:
//!       - create: warehouse.order
//!         as: copy
//!         key: "order-{{ order.id }}"
//!         body:
//!           name: "Order {{ order.number }}"
//!           cents: order.total * 100
//! "#;
//! let (set, _warnings) = RuleSet::from_texts(&[("rules.yaml".into(), rules.into())], None).unwrap();
//! let doc: Value = serde_json::from_str(
//!     r#"{"event": "order.placed", "order": {"id": 7, "number": "A-7", "total": 19.99}}"#,
//! ).unwrap();
//! let event = Event::from_document(&doc).unwrap();
//! let plan = set.evaluate(&event, &RecordedWorld::default()).unwrap();
//! assert_eq!(&*plan.effects[0].rule, "order.copy");
//! assert!(plan.to_json().contains(r#""cents": 1999"#));
//! ```

#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod case;
pub mod compile;
pub mod diagnostic;
pub mod eval;
pub mod funcs;
pub mod plan;
pub mod recorder;
pub mod ruleset;
pub mod syntax;
pub mod template;
pub mod trace;
pub mod value;
pub mod world;

pub use case::Case;
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use eval::{EvalError, EvalErrorKind, EvalOptions, Event, RuleTimes};
pub use plan::{Action, Effect, Plan};
pub use recorder::{Recorder, Recording};
pub use ruleset::{FlowInfo, Layer, RuleInfo, RuleSet};
pub use trace::{Outcome, Trace};
pub use value::{Truth, Value};
pub use world::{EmptyWorld, RecordedWorld, World, WorldError};

/// One expression compiled on its own: it sees `settings` and the built-in functions.
pub struct Expression {
    prog: compile::Program,
    expr: compile::node::CExpr,
    frame_size: u32,
    settings: Value,
}

impl Expression {
    /// Compiles an expression (or a template).
    pub fn compile(text: &str) -> Result<Expression, Diagnostics> {
        Self::compile_with_settings(text, Value::object(Default::default()))
    }

    /// Compiles an expression that may read `settings`.
    pub fn compile_with_settings(text: &str, settings: Value) -> Result<Expression, Diagnostics> {
        let mut diags = Diagnostics::default();
        let (prog, expr, frame_size) = compile::compile_expression(text, &settings, &mut diags);
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(Expression {
            prog,
            expr,
            frame_size,
            settings,
        })
    }

    /// Evaluates it with a world and a clock (milliseconds, read by `now()`).
    pub fn eval(&self, world: &dyn World, now: Option<i64>) -> Result<Value, EvalError> {
        eval::eval_alone(
            &self.prog,
            &self.settings,
            &self.expr,
            self.frame_size,
            world,
            now,
        )
    }
}
