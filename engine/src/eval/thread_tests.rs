//! The threaded evaluator (each compiled expression evaluated by the op chosen for its
//! shape, [`super::expr::op_for`]) against the general dispatcher it replaces: the same
//! values, the same steps spent, the same memory charged, the same errors at the same
//! places — also when the step budget runs out at any node — and no op ever given a node
//! of a shape it was not chosen for.

use super::fast_tests::{inputs, lambda, outcome};
use super::{
    Ctx, EvalErrorKind, EvalOptions, Event, Frame, Limits, DEFAULT_BUDGET, DEFAULT_MAX_BYTES,
    MISMATCHES, UNTHREADED,
};
use crate::compile::node::CExpr;
use crate::diagnostic::Diagnostics;
use crate::ruleset::RuleSet;
use crate::value::Value;
use crate::world::EmptyWorld;

/// Expressions of `x` (and of the settings) covering every shape that has an op of its
/// own: literals, slots, globals, paths of one and more keys below a slot or a global,
/// paths with index steps or below a call, `not`, `-`, `and`, `or`, `??`, comparisons
/// with a literal on either side, `+`, `if`, built-ins of 0 to 4 arguments (pure ones
/// by reference, ones with a lambda), lists, objects of fixed and computed keys (templates
/// are in the rule set below).
const EXPRESSIONS: &[&str] = &[
    "1",
    "x",
    "settings",
    "settings.a",
    "settings.a.b",
    "settings.a.c",
    "x.a",
    "x.a.b",
    "x.a.b.c",
    "x[\"a\"]",
    "x.a[0]",
    "[x, 1][0].a",
    "first([x]).a.b",
    "not x",
    "not x.a.b",
    "-x",
    "-x.a",
    "x and x.a",
    "x.a or x.b",
    "x.a ?? x.b ?? 3",
    "x.a.b ?? settings.a.b",
    "x == 1",
    "x.a != \"a\"",
    "x == \"a\"",
    "x == \"b\"",
    "x.a != \"z\"",
    "x.a == null",
    "x.a.b != null",
    "settings.t == \"x\"",
    "(x.a ?? x) != \"a\"",
    "1 == x.a",
    "x.a < 2",
    "x.a * 2",
    "x.a == x.b",
    "x.a + 1",
    "\"#\" + x.a",
    "x + x",
    "if x.a then x.b else x.c",
    "if x == 1 then settings.a else x.a.b",
    "now()",
    "empty(x.a)",
    "string(x)",
    "type(x.a.b)",
    "upper(x.a)",
    "len(x ?? [])",
    "contains(x.a ?? \"\", \"#\")",
    "replace(string(x.a), \"a\", \"b\")",
    "slice(x.a ?? [], 0, 1)",
    "format(\"{}-{}-{}\", x.a, x.b, x.c)",
    "filter([x, x.a, 1], y => y == 1)",
    "map([x, x.a], y => if y.a then y.a.b else y)",
    "[x, x.a, 1]",
    "{k: x.a, l: x, m: 1}",
    "{[string(x.b ?? \"k\")]: x.a}",
    "string(x) + string(x.a)",
];

/// `settings` of the expressions above.
fn settings() -> Value {
    Value::from_json(&serde_json::json!({"a": {"b": 2, "c": [1, 2]}, "t": "x"}))
}

/// What one evaluation of `body` with `x` gave: its outcome, then the steps spent and the
/// bytes charged; the same for the condition test of `body`.
fn run(
    prog: &crate::compile::Program,
    body: &CExpr,
    slot: u32,
    frame_size: u32,
    x: &Value,
    budget: u64,
    unthreaded: bool,
) -> [String; 2] {
    let settings = settings();
    let event = Event {
        name: String::new(),
        payload: Value::Null,
        now: Some(1_700_000_000_000),
    };
    let world = EmptyWorld;
    let limits = Limits {
        budget,
        ..Limits::default()
    };
    let lets = crate::compile::node::Lets::default();
    let mut out = [String::new(), String::new()];
    for (i, place) in out.iter_mut().enumerate() {
        let mut cx = Ctx::new(prog, &settings, &event, &world, limits, None);
        cx.unthreaded = unthreaded;
        let mut frame = Frame::new(frame_size.max(slot + 1), &lets);
        frame.set(slot, x.clone());
        let result = if i == 0 {
            outcome(cx.eval(body, &mut frame).map_err(|f| cx.take_failure(f)))
        } else {
            match cx.test(body, &mut frame) {
                Ok(b) => format!("ok {b}"),
                Err(f) => outcome(Err(cx.take_failure(f))),
            }
        };
        *place = format!(
            "{result}; steps {}; bytes {}",
            budget - cx.budget,
            DEFAULT_MAX_BYTES - cx.bytes_left
        );
    }
    out
}

#[test]
fn ops_agree_with_the_general_dispatcher() {
    let inputs = inputs();
    MISMATCHES.with(|m| m.set(0));
    let mut compared = 0;
    for text in EXPRESSIONS {
        let source = format!("map(now(), x => {text})");
        let mut diags = Diagnostics::default();
        let (prog, expr, frame_size) =
            crate::compile::compile_expression(&source, &settings(), &mut diags);
        assert!(!diags.has_errors(), "{source}: {diags:?}");
        let (slot, body) = lambda(&expr);
        for round in 0..2 {
            for x in &inputs {
                let threaded = run(&prog, body, slot, frame_size, x, DEFAULT_BUDGET, false);
                let general = run(&prog, body, slot, frame_size, x, DEFAULT_BUDGET, true);
                assert_eq!(threaded, general, "`{text}` with x = {x:?} (round {round})");
                // The budget running out at every node in turn: the same error, at the
                // same place.
                let steps: u64 = threaded[0]
                    .rsplit_once("; steps ")
                    .and_then(|(_, s)| s.split(';').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                for budget in 0..steps {
                    let threaded = run(&prog, body, slot, frame_size, x, budget, false);
                    let general = run(&prog, body, slot, frame_size, x, budget, true);
                    assert_eq!(
                        threaded, general,
                        "`{text}` with x = {x:?}, budget {budget}"
                    );
                    assert!(threaded[0].starts_with("error Budget"), "{}", threaded[0]);
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, EXPRESSIONS.len() * inputs.len() * 2);
    assert_eq!(
        MISMATCHES.with(std::cell::Cell::get),
        0,
        "an op met a node of a shape it was not chosen for"
    );
}

/// A rule set with what a lone expression cannot have: `let`s evaluated when first read,
/// event fields, calls of user functions with event-level arguments (remembered for the
/// evaluation) and with others (from a lambda), and code folded for the rule set's
/// settings (the `Settled` choice, taken or not as the settings agree).
fn rule_sets() -> (RuleSet, RuleSet) {
    let text = "events:\n  e:\n    fields: {x: a value}\nfunctions:\n  g(y): 'if y == null then settings.s.mode else y'\n  h(a, b): 'a ?? b'\n  k(): 'settings.s.flag and x2() == 2'\n  x2(): '2'\nrules:\n  - id: r\n    on: e\n    let:\n      v: g(x)\n      w: map([x, null], i => g(i))\n      u: h(x.a, x)\n      z: 'if settings.s.flag then x else null'\n      n: 'g(x) ?? g(x.a)'\n    when:\n      - 'v != 7'\n      - 'settings.s.flag or x == 1'\n    do:\n      - journal: {code: V, level: info, text: 'to_json([v, w, u, z, n, k(), x.a.b, x[\"a\"], h(u, v), g(x.b)])'}\n      - journal: {code: W, level: info, text: '\"{{ v }}/{{ u }}\"'}\n        if: 'not empty(u) or z == null'\n\n";
    let files = vec![("t.yaml".to_owned(), text.to_owned())];
    let settings = Some((
        "settings.yaml",
        "s:\n  flag: true\n  mode: net\n  list: []\n",
    ));
    let (folded, _) = RuleSet::from_texts(&files, settings)
        .unwrap_or_else(|d| panic!("loads: {}", d.render(false)));
    let written = RuleSet::unfolded(&files, settings)
        .unwrap_or_else(|d| panic!("loads: {}", d.render(false)));
    (folded, written)
}

/// The plan (or the error) of an evaluation with `budget`.
fn plan(set: &RuleSet, ev: &Event, settings: Option<&Value>, budget: u64) -> String {
    let opts = EvalOptions {
        settings,
        budget,
        ..EvalOptions::default()
    };
    match set.evaluate_with(ev, &EmptyWorld, opts) {
        Ok(plan) => serde_json::to_string(&plan).unwrap_or_default(),
        Err(e) => format!("error {:?}: {e}", e.kind),
    }
}

/// The steps an evaluation takes: the smallest budget it does not run out of.
fn steps(set: &RuleSet, ev: &Event, settings: Option<&Value>) -> u64 {
    let (mut lo, mut hi) = (0u64, 100_000u64);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let opts = EvalOptions {
            settings,
            budget: mid,
            ..EvalOptions::default()
        };
        match set.evaluate_with(ev, &EmptyWorld, opts) {
            Err(e) if e.kind == EvalErrorKind::Budget => lo = mid + 1,
            _ => hi = mid,
        }
    }
    lo
}

#[test]
fn rules_evaluate_the_same_threaded_or_not() {
    let (folded, written) = rule_sets();
    let other =
        Value::from_json(&serde_json::json!({"s": {"flag": false, "mode": "gross", "list": []}}));
    MISMATCHES.with(|m| m.set(0));
    let mut compared = 0;
    for x in inputs() {
        let mut doc = crate::value::Map::default();
        doc.insert("event".into(), Value::str("e"));
        doc.insert("x".into(), x.clone());
        let ev = Event::from_document(&Value::object(doc)).expect("event");
        for set in [&folded, &written] {
            for settings in [None, Some(&other)] {
                let mut seen = Vec::new();
                for unthreaded in [false, true] {
                    UNTHREADED.with(|u| u.set(unthreaded));
                    let full = plan(set, &ev, settings, DEFAULT_BUDGET);
                    let spent = steps(set, &ev, settings);
                    let short = plan(set, &ev, settings, spent.saturating_sub(1));
                    seen.push((full, spent, short));
                }
                UNTHREADED.with(|u| u.set(false));
                assert_eq!(seen[0], seen[1], "x = {x:?}, settings {settings:?}");
                assert!(seen[0].1 >= 5, "{seen:?}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, inputs().len() * 4);
    assert_eq!(MISMATCHES.with(std::cell::Cell::get), 0);
}

/// The comparison above sees a difference in steps: an evaluation that spends one step
/// more (a budget one short of it runs out) is told apart.
#[test]
fn the_comparison_sees_a_step_more() {
    let (folded, _) = rule_sets();
    let mut doc = crate::value::Map::default();
    doc.insert("event".into(), Value::str("e"));
    doc.insert("x".into(), Value::Int(1));
    let ev = Event::from_document(&Value::object(doc)).expect("event");
    let spent = steps(&folded, &ev, None);
    assert!(plan(&folded, &ev, None, spent).starts_with('{'));
    assert!(plan(&folded, &ev, None, spent - 1).starts_with("error Budget"));
}
