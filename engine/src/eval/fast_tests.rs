//! The evaluator's fast paths (conditions tested without building values, the ops of the
//! threaded evaluator, values looked at by reference through `if` and `??`,
//! one-argument built-ins given their argument by reference, key positions remembered per
//! path step) against the general path: the same results and the same errors (kind,
//! message, location) for varied expressions over varied values — null, missing keys,
//! pending references, wrong types, objects large enough to be indexed.

use std::sync::Arc;

use super::{Ctx, EvalError, Frame, Limits};
use crate::compile::node::{CExpr, Node};
use crate::diagnostic::Diagnostics;
use crate::value::{Map, PendingRef, Value};

/// Expressions of `x`, each exercising one or more fast paths.
const EXPRESSIONS: &[&str] = &[
    "x",
    "x.a",
    "x.a.b",
    "x == 1",
    "x != \"a\"",
    "1 == x",
    "x.a == null",
    "x.a != 1",
    "x.a.b == 2",
    "x == x.a",
    "x.a == x.b",
    "not x",
    "not x.a",
    "not (x.a == 1)",
    "x and x.a",
    "x.a or x.b",
    "x.a == 1 or x.b == 2",
    "x.a != null and x.a.b == 2",
    "if x.a then x.b else x.c",
    "if x == 1 then \"one\" else x",
    "if x.a == 1 then x.b else 0",
    "x.a ?? x.b ?? 3",
    "(x.a ?? x) == 2",
    "(if x.a then x.b else x) == 1",
    "x.a ?? x",
    "empty(x)",
    "empty(x.a)",
    "empty(x.a ?? x.b)",
    "empty(if x.a then x.b else x)",
    "not empty(x.a)",
    "string(x.a)",
    "type(x)",
    "type(x.a)",
    "len(x)",
    "len(x.a)",
    "number(x.a)",
    "int(x)",
    "upper(x.a)",
    "x.a + 1",
    "x.a < 2",
    "x.a in [1, \"a\"]",
    "contains(x.a ?? \"\", \"#\")",
    "{k: x.a, l: x, m: 1}",
    "[x, x.a, 1, x.a ?? 2]",
    "filter([x, x.a, 1], y => y == 1)",
    "find([x.a, x], y => not empty(y))",
    "map([x, x.a], y => if y.a then y.a else y)",
    "any([x.a, x.b], y => y == 2)",
    "first([x.a, x.b] ?? [])",
];

fn pending(known: Option<Value>) -> Value {
    Value::Ref(Arc::new(PendingRef {
        name: crate::value::Str::from("made"),
        path: Vec::new(),
        known,
    }))
}

/// Values of `x`: every type, null, missing keys, pending references, objects of several
/// shapes (so remembered key positions go stale) and one of more than 32 keys (indexed).
pub(super) fn inputs() -> Vec<Value> {
    let json = |s: &str| Value::from_json(&serde_json::from_str(s).unwrap_or_default());
    let mut wide = Map::new();
    for i in 0..40 {
        wide.insert(crate::value::intern::key(&format!("k{i}")), Value::Int(i));
    }
    wide.insert(crate::value::intern::key("a"), Value::Int(1));
    wide.insert(crate::value::intern::key("b"), Value::Int(2));
    let mut with_ref = Map::new();
    with_ref.insert(crate::value::intern::key("a"), pending(None));
    with_ref.insert(crate::value::intern::key("b"), Value::Int(2));
    vec![
        Value::Null,
        Value::bool(true),
        Value::bool(false),
        Value::Int(0),
        Value::Int(1),
        Value::Int(2),
        json("2.5"),
        Value::str("a"),
        Value::str(""),
        Value::str("#x"),
        json("[]"),
        json("[1]"),
        json("{}"),
        json(r#"{"a": 1}"#),
        json(r#"{"a": null, "b": 2}"#),
        json(r#"{"b": 2, "a": "a"}"#),
        json(r#"{"a": {"b": 2}, "b": null, "c": 3}"#),
        json(r#"{"c": 3, "b": 1}"#),
        json(r#"{"a": true, "b": false, "c": "c"}"#),
        json(r#"{"a": false, "b": 1, "c": "c"}"#),
        json(r#"{"a": [1, 2], "b": "x"}"#),
        json(r#"{"a": "12", "b": 2.5}"#),
        Value::object(wide),
        pending(None),
        pending(Some(json(r#"{"a": 1, "b": 2}"#))),
        Value::object(with_ref),
    ]
}

/// The lambda of `map(now(), x => …)`: its parameter's slot and its body (a call no pass
/// can fold, so the body stays as written).
pub(super) fn lambda(prog_expr: &CExpr) -> (u32, &CExpr) {
    match &prog_expr.node {
        Node::Call(_, _, Some(l)) => (l.params[0], &l.body),
        other => panic!("not a call with a lambda: {other:?}"),
    }
}

/// What an evaluation gave, comparable across paths: the value with its type, or the
/// error's kind, message and location.
pub(super) fn outcome(r: Result<Value, EvalError>) -> String {
    match r {
        Ok(v) => format!("ok {} {v:?}", v.type_name()),
        Err(e) => format!("error {:?} at {:?}: {}", e.kind, e.location, e.message),
    }
}

fn run(
    prog: &crate::compile::Program,
    body: &CExpr,
    slot: u32,
    frame_size: u32,
    x: &Value,
    plain: bool,
) -> (String, String) {
    let settings = Value::Null;
    let event = super::Event {
        name: String::new(),
        payload: Value::Null,
        now: None,
    };
    let world = crate::world::EmptyWorld;
    let mut cx = Ctx::new(prog, &settings, &event, &world, Limits::default(), None);
    cx.plain = plain;
    let lets = crate::compile::node::Lets::default();
    let mut frame = Frame::new(frame_size.max(slot + 1), &lets);
    frame.set(slot, x.clone());
    let value = outcome(cx.eval(body, &mut frame).map_err(|f| cx.take_failure(f)));
    let mut frame = Frame::new(frame_size.max(slot + 1), &lets);
    frame.set(slot, x.clone());
    let holds = match cx.test(body, &mut frame) {
        Ok(b) => format!("ok {b}"),
        Err(f) => outcome(Err(cx.take_failure(f))),
    };
    (value, holds)
}

#[test]
fn fast_paths_agree_with_the_general_path() {
    let inputs = inputs();
    let mut compared = 0;
    for text in EXPRESSIONS {
        let source = format!("map(now(), x => {text})");
        let mut diags = Diagnostics::default();
        let (prog, expr, frame_size) =
            crate::compile::compile_expression(&source, &Value::Null, &mut diags);
        assert!(!diags.has_errors(), "{source}: {diags:?}");
        let (slot, body) = lambda(&expr);
        // Twice over the inputs: the second round meets key positions remembered from
        // objects of other shapes.
        for round in 0..2 {
            for x in &inputs {
                let fast = run(&prog, body, slot, frame_size, x, false);
                let plain = run(&prog, body, slot, frame_size, x, true);
                assert_eq!(fast, plain, "`{text}` with x = {x:?} (round {round})");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, EXPRESSIONS.len() * inputs.len() * 2);
}

/// The comparison above would see a wrong fast path: a condition that tested as the
/// opposite of its value's truthiness fails it.
#[test]
fn the_comparison_sees_a_difference() {
    let mut diags = Diagnostics::default();
    let (prog, expr, frame_size) =
        crate::compile::compile_expression("map(now(), x => x.a == 1)", &Value::Null, &mut diags);
    let (slot, body) = lambda(&expr);
    let x = Value::from_json(&serde_json::json!({"a": 1}));
    let (value, holds) = run(&prog, body, slot, frame_size, &x, false);
    assert_eq!(value, "ok boolean true");
    assert_eq!(holds, "ok true");
    let x = Value::from_json(&serde_json::json!({"a": 2}));
    let (value, holds) = run(&prog, body, slot, frame_size, &x, false);
    assert_eq!(
        (value.as_str(), holds.as_str()),
        ("ok boolean false", "ok false")
    );
}
