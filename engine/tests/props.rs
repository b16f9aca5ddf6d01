//! The parser, the compiler and the evaluator never panic, whatever the input: random
//! source text, random token soups, random documents, random rule files.

use proptest::prelude::*;
use skladsync_engine::syntax::parse;
use skladsync_engine::{Event, Expression, RecordedWorld, RuleSet, Value};

/// Tokens that make random text likely to reach deep into the grammar.
const TOKENS: &[&str] = &[
    "settings",
    "settings.a",
    "settings.b.c",
    "x",
    "i",
    ".",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    ",",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "??",
    "|",
    "=>",
    "if",
    "then",
    "else",
    "null",
    "true",
    "false",
    "0",
    "1",
    "-1",
    "19.99",
    "100",
    "\"s\"",
    "'t'",
    "map",
    "filter",
    "sum",
    "len",
    "round",
    "date",
    "format_date",
    "chunks",
    "split",
    "join",
    "digits",
    "merge",
    "group_by",
    "sort_by",
    "lookup",
    "fetch",
    "linked",
    "reference",
    "now",
    "upper",
    "number",
    "int",
    "clamp",
    "min",
    "max",
    "first",
    "last",
    "keys",
    "values",
    "slice",
    "{{",
    "}}",
    "{%",
    "%}",
    " ",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.join(" "))
}

/// A plausible expression: a function applied to paths and literals.
fn structured() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("settings.a".to_owned()),
        Just("settings.b.c".to_owned()),
        Just("settings.list".to_owned()),
        Just("null".to_owned()),
        Just("19.99".to_owned()),
        Just("\"2024-05-01 10:00:00\"".to_owned()),
        (-5i64..5).prop_map(|i| i.to_string()),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            (
                inner.clone(),
                inner.clone(),
                prop::sample::select(&["+", "-", "*", "/", "??", "==", "<", "and", "in"][..])
            )
                .prop_map(|(a, b, op)| format!("({a} {op} {b})")),
            (
                inner.clone(),
                prop::sample::select(
                    &[
                        "len", "round", "upper", "digits", "number", "first", "keys", "date",
                        "string", "empty", "flatten", "sort"
                    ][..]
                )
            )
                .prop_map(|(a, f)| format!("{f}({a})")),
            (
                inner.clone(),
                prop::sample::select(
                    &["map", "filter", "sum", "any", "sort_by", "group_by", "unique"][..]
                )
            )
                .prop_map(|(a, f)| format!("{f}({a}, x => x)")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| format!("{{k: {a}, [string({b})]: 1}}")),
            (inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c)| format!("if {a} then {b} else {c}")),
        ]
    })
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        (-1.0e6f64..1.0e6).prop_map(|f| serde_json::json!(f)),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(&["a", "b", "c", "list", "items", "id"][..]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| serde_json::Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_any_text(text in ".{0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn parser_never_panics_on_token_soup(text in token_soup()) {
        let _ = parse(&text);
    }

    #[test]
    fn compiler_and_evaluator_never_panic(text in prop_oneof![token_soup(), structured()], settings in json_value()) {
        let settings = Value::from_json(&settings);
        let settings = match settings {
            Value::Object(_) => settings,
            other => Value::from_pairs([("a", other.clone()), ("list", Value::array(vec![other]))]),
        };
        if let Ok(expr) = Expression::compile_with_settings(&text, settings) {
            let _ = expr.eval(&RecordedWorld::default(), Some(0));
        }
    }

    #[test]
    fn rule_sets_never_panic_on_random_documents(doc in json_value(), status in ".{0,8}") {
        let rules = r#"
events:
  thing.changed:
    fields: {thing: the thing}
functions:
  total(xs): sum(xs ?? [], i => (i.price ?? 0) * (i.quantity ?? 1))
rules:
  - id: r
    on: thing.changed
    let:
      items: thing.items
      t: total(items)
    when:
      - check: t >= 0
        journal: {code: NEG, text: "{{ thing.id }} {{ t }}"}
    do:
      - for: i
        in: items
        do:
          - create: sys.item
            as: made
            key: '"k" + string(i.id)'
            body: {id: i.id, name: upper(string(i.name)), when: date(i.date)}
      - link: {kind: thing, a: thing.id, b: made.id}
"#;
        let (set, _) = RuleSet::from_texts(&[("r.yaml".to_owned(), rules.to_owned())], None).expect("valid rules");
        let payload = Value::from_pairs([("thing", Value::from_json(&doc)), ("status", Value::from(status))]);
        let mut map = payload.as_object().cloned().unwrap_or_default();
        map.insert("event".into(), Value::str("thing.changed"));
        let event = Event::from_document(&Value::object(map)).expect("event");
        let _ = set.evaluate(&event, &RecordedWorld::default());
    }

    #[test]
    fn rule_loader_never_panics_on_mangled_files(cut in 0usize..600, insert in ".{0,6}") {
        let base = "events:\n  e:\n    fields: {x: the x}\nfunctions:\n  f(a): a + 1\nflows:\n  fl:\n    params: [p]\n    when:\n      - check: p != null\n        journal: NOPE\n    return: p\nrules:\n  - id: r\n    on: e\n    let:\n      y: f(x.n)\n    do:\n      - use: fl\n        with: {p: y}\n        as: z\n      - create: s.t\n        body: {a: z, b: \"{{ y }}\"}\nchecks:\n  - id: c\n    check: true\n    message: '\"m\"'\n";
        let cut = cut.min(base.len());
        let cut = (0..=cut).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
        let text = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
        let _ = RuleSet::from_texts(&[("m.yaml".to_owned(), text)], Some(("settings.yaml", "a: 1")));
    }
}

#[test]
fn pathological_nesting_is_refused_not_overflowed() {
    let deep_parens = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(parse(&deep_parens).is_err());
    let long_chain = vec!["1"; 100_000].join(" + ");
    assert!(parse(&long_chain).is_err());
    let coalesce = vec!["a"; 50_000].join(" ?? ");
    assert!(parse(&coalesce).is_err());
    let prefixes = format!("{}x", "not ".repeat(50_000));
    assert!(parse(&prefixes).is_err());
    let negs = format!("{}x", "- ".repeat(50_000));
    assert!(parse(&negs).is_err());
    let ifs = "if a then ".repeat(10_000) + "1" + &" else 2".repeat(10_000);
    assert!(parse(&ifs).is_err());
    let deep_yaml = format!("rules: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(RuleSet::from_texts(&[("d.yaml".to_owned(), deep_yaml)], None).is_err());
    let deep_block: String = (0..3000)
        .map(|i| format!("{}- \n", " ".repeat(i * 2)))
        .collect();
    assert!(RuleSet::from_texts(&[("b.yaml".to_owned(), deep_block)], None).is_err());
}

#[test]
fn runaway_evaluation_hits_the_budget_and_names_the_rule() {
    let rules = r#"
events:
  e:
    fields: {n: a number}
rules:
  - id: heavy.rule
    on: e
    let:
      big: range(100000)
      product: 'big | map(a => big | filter(b => b == a) | len()) | sum()'
    do:
      - skip: string(product)
"#;
    let (set, _) =
        RuleSet::from_texts(&[("h.yaml".to_owned(), rules.to_owned())], None).expect("valid");
    let doc: Value = serde_json::from_str(r#"{"event": "e", "n": 1}"#).expect("json");
    let event = Event::from_document(&doc).expect("event");
    let err = set
        .evaluate(&event, &RecordedWorld::default())
        .expect_err("budget");
    assert_eq!(err.kind, skladsync_engine::EvalErrorKind::Budget);
    assert_eq!(err.rule.as_deref(), Some("heavy.rule"));
    assert!(err.to_string().contains("heavy.rule"), "{err}");
}
