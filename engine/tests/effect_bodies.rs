//! What effects carry, built the cheap way (docs/language.md, "What an evaluation costs",
//! ninth landing): bodies of distinct keys built from their shape, links answered from the
//! object built when they were made, time zones read once. Each gives what the plain way
//! gave.

use skladsync_engine::{Action, Event, RecordedWorld, RuleSet, Value};

fn rules(text: &str) -> RuleSet {
    let (set, _) = RuleSet::from_texts(&[("bodies.yaml".to_owned(), text.to_owned())], None)
        .unwrap_or_else(|d| panic!("the rules load: {d:?}"));
    set
}

fn event(fields: &str) -> Event {
    let doc: Value = serde_json::from_str(&format!(r#"{{"event": "e"{fields}}}"#)).expect("json");
    Event::from_document(&doc).expect("event")
}

fn empty_world() -> RecordedWorld {
    RecordedWorld::from_yaml("entities: {}\n").expect("world")
}

/// The bodies of the plan's creations, as JSON texts (keys in order).
fn bodies(set: &RuleSet, ev: &Event) -> Vec<String> {
    let plan = set.evaluate(ev, &empty_world()).expect("evaluates");
    plan.effects
        .iter()
        .filter_map(|e| match &e.action {
            Action::Create { body, .. } => Some(body.to_json()),
            _ => None,
        })
        .collect()
}

/// The texts of the plan's journal entries, in order.
fn journal(set: &RuleSet, ev: &Event) -> Vec<String> {
    let plan = set.evaluate(ev, &empty_world()).expect("evaluates");
    plan.effects
        .iter()
        .filter_map(|e| match &e.action {
            Action::Journal { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

const BODIES: &str = r#"
events:
  e:
    fields: {a: a value, b: another}
rules:
  - id: bodies
    on: e
    do:
      - create: shop.item
        body: {x: a, y: b, z: {p: a, q: b}}
      - create: shop.item
        body:
          1: '"first"'
          y: b
          '1': '"second"'
      - create: shop.item
        body:
          1: '"first"'
          '1': b
          y: a
"#;

#[test]
fn bodies_leave_out_nulls_and_keep_their_order() {
    let set = rules(BODIES);
    let got = bodies(&set, &event(r#", "a": 1, "b": 2"#));
    assert_eq!(got[0], r#"{"x":1,"y":2,"z":{"p":1,"q":2}}"#);
    // A null leaves its key out, at any place; the others keep their order.
    let got = bodies(&set, &event(r#", "a": 1"#));
    assert_eq!(got[0], r#"{"x":1,"z":{"p":1}}"#);
    let got = bodies(&set, &event(r#", "b": 2"#));
    assert_eq!(got[0], r#"{"y":2,"z":{"q":2}}"#);
    let got = bodies(&set, &event(""));
    assert_eq!(got[0], r#"{"z":{}}"#);
}

#[test]
fn a_key_written_twice_is_one_key_of_the_body() {
    // YAML keys `1` and `'1'` are one key of the body: it keeps its first place and the
    // last value that is not null.
    let set = rules(BODIES);
    let got = bodies(&set, &event(r#", "a": 1, "b": 2"#));
    assert_eq!(got[1], r#"{"1":"second","y":2}"#);
    assert_eq!(got[2], r#"{"1":2,"y":1}"#);
    let got = bodies(&set, &event(r#", "a": 1"#));
    assert_eq!(got[2], r#"{"1":"first","y":1}"#);
}

const LINKS: &str = r#"
events:
  e:
    fields: {crm: an id, ms: another}
rules:
  - id: links
    on: e
    do:
      - link: {kind: order, crm: crm, shop: ms}
      - link: {kind: order, crm: '"other"', shop: '"ms-2"'}
      - journal:
          code: SEEN
          level: info
          text: >-
            string(linked("order", "crm", crm)) + " " + string(linked("order", "shop", "ms-2"))
            + " " + string(linked("order", "crm", "nothing")) + " " + string(linked("order", "kind", "order"))
            + " " + string(linked("order", "crm", 7))
"#;

#[test]
fn a_link_of_the_plan_answers_linked() {
    let set = rules(LINKS);
    let got = journal(&set, &event(r#", "crm": "7", "ms": "ms-1""#));
    assert_eq!(
        got,
        [concat!(
            r#"{"kind":"order","crm":"7","shop":"ms-1"} "#,
            r#"{"kind":"order","crm":"other","shop":"ms-2"} "#,
            // No link has that id; `kind` is not a system (the world has neither).
            "  ",
            // A number matches the same id as text.
            r#"{"kind":"order","crm":"7","shop":"ms-1"}"#
        )]
    );
}

const ZONES: &str = r#"
events:
  e:
    fields: {at: a wall time}
rules:
  - id: zones
    on: e
    do:
      - journal:
          code: SEEN
          level: info
          text: >-
            format_date(convert_tz(at, "Europe/Moscow", "Asia/Vladivostok"), "%Y-%m-%d %H:%M")
            + " " + format_date(convert_tz(at, "Asia/Vladivostok", "Europe/Moscow"), "%Y-%m-%d %H:%M")
            + " " + format_date(convert_tz(at, "UTC", "Asia/Yekaterinburg"), "%Y-%m-%d %H:%M")
            + " " + format_date(convert_tz(at, "Europe/Kaliningrad", "Europe/Samara"), "%Y-%m-%d %H:%M")
            + " " + format_date(convert_tz(at, "Asia/Kamchatka", "Europe/Moscow"), "%Y-%m-%d %H:%M")
            + " " + format_date(convert_tz(at, "Europe/Moscow", "Asia/Vladivostok"), "%Y-%m-%d %H:%M")
"#;

#[test]
fn time_zones_read_again_are_the_zones_named() {
    let set = rules(ZONES);
    let ev = event(r#", "at": "2024-05-01 12:00:00""#);
    let want = [
        "2024-05-01 19:00 2024-05-01 05:00 2024-05-01 17:00 2024-05-01 14:00 2024-05-01 03:00 \
         2024-05-01 19:00",
    ];
    // Twice: the second evaluation reads every zone from what the first one remembered,
    // six zones (more than are kept), so some were read again in between.
    assert_eq!(journal(&set, &ev), want);
    assert_eq!(journal(&set, &ev), want);
    let bad = rules(&ZONES.replace("\"Asia/Kamchatka\"", "\"Asia/Nowhere\""));
    let err = bad
        .evaluate(&ev, &empty_world())
        .expect_err("an unknown zone is an error");
    assert!(
        err.message
            .contains("\"Asia/Nowhere\" is not an IANA time zone"),
        "{err}"
    );
}

const DECIDED: &str = r#"
events:
  e:
    fields: {}
rules:
  - id: decided
    on: e
    do:
      - journal: {code: SEEN, level: info, text: 'if settings.s.flag then "on" else "off"'}
"#;

#[test]
fn settings_remembered_as_settled_are_those_objects_only() {
    let (set, _) = RuleSet::from_texts(
        &[("decided.yaml".to_owned(), DECIDED.to_owned())],
        Some(("settings.yaml", "s:\n  flag: true\n")),
    )
    .unwrap_or_else(|d| panic!("the rules load: {d:?}"));
    let ev = event("");
    let with = |settings: &Value| {
        let plan = set
            .evaluate_with(
                &ev,
                &empty_world(),
                skladsync_engine::EvalOptions {
                    settings: Some(settings),
                    ..Default::default()
                },
            )
            .expect("evaluates");
        match &plan.effects[0].action {
            Action::Journal { text, .. } => text.clone(),
            other => panic!("{other:?}"),
        }
    };
    // Another object with the own values (the folded code), then one that differs (the
    // code as written), each evaluated twice, in turn.
    let same: Value = serde_json::from_str(r#"{"s": {"flag": true}}"#).expect("json");
    let other: Value = serde_json::from_str(r#"{"s": {"flag": false}}"#).expect("json");
    for _ in 0..2 {
        assert_eq!(with(&same), "on");
        assert_eq!(with(&same), "on");
        assert_eq!(with(&other), "off");
        assert_eq!(with(&other), "off");
    }
    assert_eq!(with(set.settings()), "on");
    assert_eq!(with(&other), "off");
}

const NAMES: &str = r#"
events:
  e:
    fields: {}
flows:
  inner:
    when:
      - 'false'
    do:
      - skip: '"never"'
  outer:
    do:
      - create: shop.thing
        as: thing
        body: {at: '"outer"'}
      - use: inner
rules:
  - id: first
    on: e
    do:
      - for: i
        in: range(2)
        do:
          - create: shop.thing
            as: thing
            body: {at: i}
      - create: shop.other
        as: other
        body: {at: '"first"'}
  - id: abandoned
    on: e
    do:
      - use: outer
  - id: last
    on: e
    do:
      - create: shop.thing
        as: thing
        body: {at: '"last"'}
"#;

#[test]
fn names_are_unique_in_the_plan_and_an_abandoned_rule_gives_its_names_back() {
    let set = rules(NAMES);
    let plan = set.evaluate(&event(""), &empty_world()).expect("evaluates");
    let names: Vec<(String, String)> = plan
        .effects
        .iter()
        .filter_map(|e| match &e.action {
            Action::Create { name, body, .. } => Some((
                name.as_deref().unwrap_or_default().to_string(),
                body.to_json(),
            )),
            _ => None,
        })
        .collect();
    let want = [
        ("thing", r#"{"at":0}"#),
        ("thing#2", r#"{"at":1}"#),
        ("other", r#"{"at":"first"}"#),
        // The abandoned rule's `thing#3` was taken back.
        ("thing#3", r#"{"at":"last"}"#),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_string()))
        .collect();
    assert_eq!(names, want);
}
