//! Calls the compiler fuses for speed give exactly what the calls they replace give:
//! `first(split(t, s))` and `last(split(t, s))` build only the part they return, and must
//! agree with `first(…)`/`last(…)` of the whole list (here `[] + split(t, s)`, which is not
//! fused), errors included.

use skladsync_engine::{Action, EvalError, Event, RecordedWorld, RuleSet, Value};

const RULES: &str = r#"
events:
  e:
    fields: {t: a text, s: a separator}
rules:
  - id: fused
    on: e
    do:
      - journal: {code: FUSED, level: info, text: 'to_json([first(split(t, s)), last(split(t, s))])'}
  - id: whole
    on: e
    do:
      - journal: {code: WHOLE, level: info, text: 'to_json([first([] + split(t, s)), last([] + split(t, s))])'}
"#;

fn run(rules: &str, fields: &str) -> Result<Vec<String>, EvalError> {
    let (set, _) = RuleSet::from_texts(&[("fused.yaml".to_owned(), rules.to_owned())], None)
        .unwrap_or_else(|d| panic!("the rules load: {d:?}"));
    let doc: Value = serde_json::from_str(&format!(r#"{{"event": "e", {fields}}}"#)).expect("json");
    let event = Event::from_document(&doc).expect("event");
    let plan = set.evaluate(&event, &RecordedWorld::default())?;
    Ok(plan
        .effects
        .iter()
        .filter_map(|e| match &e.action {
            Action::Journal { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect())
}

#[test]
fn first_and_last_of_a_split_agree_with_the_whole_list() {
    let cases = [
        (r#""a/b/c""#, r#""/""#, r#"["a","c"]"#),
        (r#""abc""#, r#""/""#, r#"["abc","abc"]"#),
        (r#""""#, r#""/""#, r#"["",""]"#),
        (r#""/a/""#, r#""/""#, r#"["",""]"#),
        (r#""x::y::z""#, r#""::""#, r#"["x","z"]"#),
        (r##""ёжик#сад""##, r##""#""##, r#"["ёжик","сад"]"#),
        (r#""abc""#, r#""""#, r#"["a","c"]"#),
        (r#""""#, r#""""#, "[null,null]"),
        ("null", r#""/""#, "[null,null]"),
    ];
    for (t, s, want) in cases {
        let texts = run(RULES, &format!(r#""t": {t}, "s": {s}"#)).expect("evaluates");
        assert_eq!(texts, [want, want], "t = {t}, s = {s}");
    }
}

#[test]
fn errors_of_a_fused_split_are_those_of_split() {
    for fields in [r#""t": 5, "s": "/""#, r#""t": "a/b", "s": 1"#] {
        let fused = run(RULES, fields).expect_err("split of a number fails");
        let whole = run(&RULES.replace("first(split", "first([] + split"), fields)
            .expect_err("split of a number fails");
        assert_eq!(fused.message, whole.message, "{fields}");
        assert!(fused.message.starts_with("split(): "), "{}", fused.message);
    }
}

#[test]
fn only_a_split_is_fused() {
    // `first(first(split(…)))`: the outer `first` gets a text, which is an error, fused or not.
    let nested = r#"
events:
  e:
    fields: {t: a text, s: a separator}
rules:
  - id: nested
    on: e
    do:
      - journal: {code: N, level: info, text: 'to_json(first(first(split(t, s))))'}
"#;
    let err = run(nested, r#""t": "a/b", "s": "/""#).expect_err("first() of a text fails");
    assert!(err.message.starts_with("first(): "), "{}", err.message);
}
