//! A profile of a rule set, rule by rule (`EvalOptions::rule_times`): which rules an event's
//! evaluation ran, and the steps and time each took, summed over evaluations. Profiling
//! changes nothing in the plan.

use std::time::Duration;

use skladsync_engine::eval::RuleTime;
use skladsync_engine::{EvalOptions, Event, RecordedWorld, RuleSet, RuleTimes, Value};

const RULES: &str = r#"
events:
  e:
    fields: {n: how many}
  f:
    fields: {}
rules:
  - id: fan.out
    on: e
    do:
      - for: i
        in: range(n)
        do:
          - journal:
              code: ROW
              level: info
              text: "row {{ i }}"
  - id: quiet
    on: e
    when:
      - n < 0
    do:
      - journal:
          code: NEVER
          text: '"never"'
  - id: elsewhere
    on: f
    do:
      - journal:
          code: F
          text: '"f"'
"#;

fn rules() -> RuleSet {
    let (set, _) = RuleSet::from_texts(&[("times.yaml".to_owned(), RULES.to_owned())], None)
        .unwrap_or_else(|d| panic!("the rules load: {d:?}"));
    set
}

fn event(n: u32) -> Event {
    let doc: Value = serde_json::from_str(&format!(r#"{{"event": "e", "n": {n}}}"#)).expect("json");
    Event::from_document(&doc).expect("event")
}

#[test]
fn each_rule_that_ran_is_profiled_with_its_steps_and_the_plan_is_the_same() {
    let set = rules();
    let world = RecordedWorld::default();
    let mut times = RuleTimes::default();
    let mut plans = Vec::new();
    for n in [50, 5] {
        let profiled = set
            .evaluate_with(
                &event(n),
                &world,
                EvalOptions {
                    rule_times: Some(&mut times),
                    ..EvalOptions::default()
                },
            )
            .expect("evaluates");
        let plain = set
            .evaluate_with(&event(n), &world, EvalOptions::default())
            .expect("evaluates");
        assert_eq!(
            profiled.to_json(),
            plain.to_json(),
            "profiling changes no plan"
        );
        plans.push(plain.effects.len());
    }
    assert_eq!(plans, [50, 5]);
    assert_eq!(times.evaluations, 2);
    let names: Vec<&str> = times.rules.iter().map(|r| r.rule.as_str()).collect();
    // In the order they first ran; a rule of another event is not there.
    assert_eq!(names, ["fan.out", "quiet"]);
    let fan = &times.rules[0];
    let quiet = &times.rules[1];
    // Every journal entry of the loop is at least one step; the quiet rule only tested its
    // condition, twice.
    assert!(fan.steps >= 55, "{fan:?}");
    assert!(quiet.steps >= 2 && quiet.steps < 20, "{quiet:?}");
    assert!(fan.steps > 5 * quiet.steps, "{fan:?} {quiet:?}");
    assert!(fan.time > Duration::ZERO, "{fan:?}");
}

#[test]
fn by_time_lists_the_dearest_rule_first() {
    let rule = |name: &str, micros: u64| RuleTime {
        rule: name.to_owned(),
        time: Duration::from_micros(micros),
        steps: micros,
    };
    let times = RuleTimes {
        evaluations: 1,
        rules: vec![rule("a", 2), rule("b", 30), rule("c", 7)],
    };
    let order: Vec<&str> = times.by_time().iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(order, ["b", "c", "a"]);
}
