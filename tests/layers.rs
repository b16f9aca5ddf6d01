//! Layers: an integrator's rule files over the default rule set, never editing it. A layer
//! adds rules, replaces a rule (same id), a function or a flow (same name), and disables
//! rules below (`disable:`).

mod common;

use skladsync_engine::ruleset::Layer;
use skladsync_engine::{Case, EmptyWorld, Event, RuleSet, Value};

const BASE: &str = r#"
events:
  order.changed:
    fields: {order: the order}
functions:
  extra_positions(o): '[]'
flows:
  positions:
    do:
      - journal: {code: POSITIONS, text: 'format("{}", len(o.items) + len(extra_positions(o)))'}
    params: [o]
rules:
  - id: a
    on: order.changed
    do:
      - journal: {code: A, text: "'base a'"}
      - use: positions
        with: {o: order}
  - id: b
    on: order.changed
    do:
      - journal: {code: B, text: "'base b'"}
"#;

const LAYER: &str = r#"
functions:
  extra_positions(o): 'if o.gift then [{service: "gift-wrap"}] else []'
disable: [b]
rules:
  - id: a
    on: order.changed
    do:
      - journal: {code: A, text: "'layer a'"}
      - use: positions
        with: {o: order}
  - id: c
    on: order.changed
    do:
      - journal: {code: C, text: "'layer c'"}
"#;

fn layers(layer: &str) -> Vec<Layer> {
    vec![
        Layer {
            name: "rules".into(),
            files: vec![("rules/base.yaml".into(), BASE.into())],
        },
        Layer {
            name: "mine".into(),
            files: vec![("mine/gift.yaml".into(), layer.into())],
        },
    ]
}

fn texts(plan: &skladsync_engine::Plan) -> Vec<String> {
    let v: Value = serde_json::from_str(&plan.to_json()).expect("json");
    v.get("effects")
        .as_array()
        .unwrap_or_default()
        .iter()
        .map(|e| e.get("text").to_text())
        .collect()
}

#[test]
fn a_layer_replaces_disables_and_adds_without_editing_the_base() {
    let (set, warnings) = RuleSet::from_layers(&layers(LAYER), None, None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    assert!(warnings.is_empty(), "{}", warnings.render(false));
    let doc: Value =
        serde_yaml::from_str("event: order.changed\norder: {gift: true, items: [{id: 1}]}\n")
            .expect("event");
    let event = Event::from_document(&doc).expect("event");
    let plan = set.evaluate(&event, &EmptyWorld).expect("plan");
    // `a` is the layer's, `b` is off, `c` is new; the base flow uses the layer's function.
    assert_eq!(texts(&plan), ["layer a", "2", "layer c"]);
    let rules = set.rules();
    let layer_of = |id: &str| {
        rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| (r.layer.clone(), r.file.clone()))
    };
    assert_eq!(
        layer_of("a"),
        Some(("mine".into(), "mine/gift.yaml".into()))
    );
    assert_eq!(layer_of("b"), None);
    assert_eq!(
        layer_of("c"),
        Some(("mine".into(), "mine/gift.yaml".into()))
    );
}

#[test]
fn a_layer_cannot_disable_what_is_not_below() {
    let Err(d) = RuleSet::from_layers(&layers("disable: [nope]\n"), None, None) else {
        panic!("disabling an unknown rule must fail");
    };
    let r = d.render(false);
    assert!(r.contains("E218"), "{r}");
    assert!(r.contains("mine/gift.yaml:1:"), "{r}");
    // Within one layer, an id used twice is still an error.
    let twice = format!("{BASE}\n  - id: a\n    on: order.changed\n    do: []\n");
    let one = vec![Layer {
        name: "rules".into(),
        files: vec![("rules/base.yaml".into(), twice)],
    }];
    assert!(RuleSet::from_layers(&one, None, None).is_err());
}

/// The gift-wrap example of docs/tooling.md: one layer file over the default rules (no
/// shipped file edited for it), two short cases. The wrap is uploaded, and kept when the
/// items change (the update rule sends positions whole and takes the same extension point).
#[test]
fn the_gift_wrap_layer_uploads_and_keeps_its_position() {
    let root = common::root();
    let layer = root.join("tests/layers/gift_wrap/rules");
    let settings = root.join("rules/settings.example.yaml");
    let with = RuleSet::load_layers(&root.join("rules"), &[layer], Some(&settings))
        .unwrap_or_else(|d| panic!("{}", d.render(false)))
        .0;
    let without = RuleSet::load(&root.join("rules"), Some(&settings))
        .unwrap_or_else(|d| panic!("{}", d.render(false)))
        .0;
    let cases = root.join("tests/layers/gift_wrap/cases");
    for (case, op) in [
        ("upload_wraps_the_gift.yaml", "create"),
        ("item_change_keeps_the_gift_wrap.yaml", "update"),
    ] {
        let case = Case::load(&cases.join(case)).unwrap_or_else(|e| panic!("{e}"));
        let wraps = |rules: &RuleSet| -> usize {
            let plan = case.run(rules).expect("a plan");
            let v: Value = serde_json::from_str(&plan.to_json()).expect("json");
            v.get("effects")
                .as_array()
                .unwrap_or_default()
                .iter()
                .filter(|e| {
                    e.get("op").to_text() == op && e.get("entity").to_text() == "customerorder"
                })
                .flat_map(|e| {
                    e.get("body")
                        .get("positions")
                        .as_array()
                        .unwrap_or_default()
                        .to_vec()
                })
                .filter(|p| p.to_json().contains("00000000a001"))
                .count()
        };
        assert_eq!(wraps(&with), 1, "{op}: the wrap is one position");
        assert_eq!(wraps(&without), 0, "{op}: no wrap without the layer");
    }
}
