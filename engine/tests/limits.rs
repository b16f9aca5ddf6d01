//! The limits of one evaluation: a rule that fans out into too many effects, or builds
//! gigabytes of text, is refused with a clear, deterministic error naming the rule and the
//! place, instead of a plan nobody wants or an aborted process. The limits are settings:
//! raised, they let the same rules through.

use skladsync_engine::{
    EvalError, EvalErrorKind, EvalOptions, Event, Plan, RecordedWorld, RuleSet, Value,
};

/// Loads one rule file.
fn rules(text: &str) -> RuleSet {
    let (set, _) = RuleSet::from_texts(&[("limits.yaml".to_owned(), text.to_owned())], None)
        .unwrap_or_else(|d| panic!("the rules load: {d:?}"));
    set
}

/// An event `e` with the fields of `fields` (a JSON object's inside).
fn event(fields: &str) -> Event {
    let doc: Value = serde_json::from_str(&format!(r#"{{"event": "e"{fields}}}"#)).expect("json");
    Event::from_document(&doc).expect("event")
}

fn run(set: &RuleSet, ev: &Event, opts: EvalOptions<'_>) -> Result<Plan, EvalError> {
    set.evaluate_with(ev, &RecordedWorld::default(), opts)
}

const FAN_OUT: &str = r#"
events:
  e:
    fields: {n: how many}
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
"#;

#[test]
fn a_rule_fanning_out_into_a_hundred_thousand_effects_is_refused() {
    let set = rules(FAN_OUT);
    let err = run(&set, &event(r#", "n": 100000"#), EvalOptions::default())
        .expect_err("100 000 journal entries are over the default limit");
    assert_eq!(err.kind, EvalErrorKind::Limit, "{err}");
    assert!(err.is_deterministic());
    assert_eq!(err.rule.as_deref(), Some("fan.out"));
    let text = err.to_string();
    assert!(text.starts_with("rule `fan.out` at limits.yaml:"), "{text}");
    assert!(text.contains("more than 10000 effects"), "{text}");
    assert!(text.contains("`limits.max_effects`"), "{text}");
}

#[test]
fn the_effect_limit_is_a_setting_and_counts_exactly() {
    let set = rules(FAN_OUT);
    let ev = event(r#", "n": 20"#);
    let at = |max_effects| {
        run(
            &set,
            &ev,
            EvalOptions {
                max_effects,
                ..EvalOptions::default()
            },
        )
    };
    let err = at(19).expect_err("20 effects are over a limit of 19");
    assert_eq!(err.kind, EvalErrorKind::Limit);
    assert!(err.to_string().contains("more than 19 effects"), "{err}");
    assert_eq!(
        at(20).expect("20 effects fit a limit of 20").effects.len(),
        20
    );
    assert_eq!(
        run(&set, &ev, EvalOptions::default())
            .expect("the default lets 20 through")
            .effects
            .len(),
        20
    );
}

#[test]
fn the_effect_limit_also_holds_in_flows() {
    let set = rules(
        r#"
events:
  e:
    fields: {n: how many}
flows:
  many:
    params: [n]
    do:
      - for: i
        in: range(n)
        do:
          - skip: '"row " + string(i)'
rules:
  - id: calls.flow
    on: e
    do:
      - use: many
        with: {n: n}
"#,
    );
    let err = run(
        &set,
        &event(r#", "n": 50"#),
        EvalOptions {
            max_effects: 10,
            ..EvalOptions::default()
        },
    )
    .expect_err("over the limit");
    assert_eq!(err.kind, EvalErrorKind::Limit);
    assert_eq!(err.flow.as_deref(), Some("many"));
    assert!(
        err.to_string()
            .starts_with("rule `calls.flow` (in flow `many`) at limits.yaml:"),
        "{err}"
    );
}

/// A text doubled `times` times: `s0` is 2 bytes, `s{times}` is 2^(times+1).
fn doubling(times: usize) -> String {
    let mut lets = String::from("      s0: '\"ab\"'\n");
    for i in 1..=times {
        lets.push_str(&format!("      s{i}: s{} + s{}\n", i - 1, i - 1));
    }
    format!(
        r#"
events:
  e:
    fields: {{}}
rules:
  - id: string.bomb
    on: e
    let:
{lets}    do:
      - skip: 'len(s{times})'
"#
    )
}

#[test]
fn a_text_doubled_forty_times_is_refused_before_it_is_built() {
    // 2^41 bytes (2 TiB) if it were built: without the memory budget this aborts the
    // process on allocation.
    let set = rules(&doubling(40));
    let err = run(&set, &event(""), EvalOptions::default()).expect_err("refused");
    assert_eq!(err.kind, EvalErrorKind::Limit, "{err}");
    assert!(err.is_deterministic());
    assert_eq!(err.rule.as_deref(), Some("string.bomb"));
    let text = err.to_string();
    // The `+` that would pass the budget: s26 (2^27 bytes) does not fit in what the texts
    // before it leave of 128 MiB.
    let line = doubling(40)
        .lines()
        .position(|l| l.trim_start().starts_with("s26: "))
        .expect("line")
        + 1;
    assert!(
        text.starts_with(&format!("rule `string.bomb` at limits.yaml:{line}:")),
        "{text}"
    );
    assert!(text.contains("memory budget of 134217728 bytes"), "{text}");
    assert!(text.contains("`limits.max_eval_bytes`"), "{text}");
}

#[test]
fn the_memory_budget_is_a_setting() {
    // s20 is 2 MiB; building it and the texts before takes 4 MiB.
    let set = rules(&doubling(20));
    let ev = event("");
    let small = EvalOptions {
        max_bytes: 1 << 20,
        ..EvalOptions::default()
    };
    let err = run(&set, &ev, small).expect_err("4 MiB do not fit 1 MiB");
    assert_eq!(err.kind, EvalErrorKind::Limit);
    assert!(
        err.to_string().contains("memory budget of 1048576 bytes"),
        "{err}"
    );
    let plan = run(&set, &ev, EvalOptions::default()).expect("they fit the default");
    assert_eq!(plan.effects.len(), 1);
}

/// A rule with a 1 MiB text `mib`, a list `big` of 100 000 numbers, and lists `a0` … `a40`
/// where `a{i}` is `[a{i-1}, a{i-1}]`: 2^40 items written out, a few kilobytes in memory.
/// Its only effect is `effect` (YAML, indented for a `do` list). Evaluated with a memory
/// budget of 8 MiB, so refusing takes little time even in a debug build.
fn bomb_with(effect: &str) -> Result<Plan, EvalError> {
    let set = rules(&format!(
        r#"
events:
  e:
    fields: {{}}
rules:
  - id: bomb
    on: e
    let:
      mib: 'join(map(range(1024), i => "{pad}"), "")'
      big: range(100000)
      a0: '["x"]'
{nest}    do:
{effect}
"#,
        pad = "x".repeat(1024),
        nest = (1..=40)
            .map(|i| format!("      a{i}: '[a{0}, a{0}]'\n", i - 1))
            .collect::<String>(),
    ));
    let opts = EvalOptions {
        max_bytes: 8 << 20,
        ..EvalOptions::default()
    };
    run(&set, &event(""), opts)
}

/// [`bomb_with`] a skip whose reason is `expr`.
fn bomb(expr: &str) -> Result<Plan, EvalError> {
    bomb_with(&format!(
        "      - skip: {}",
        serde_json::to_string(expr).expect("quote")
    ))
}

#[test]
fn text_built_by_functions_is_checked_before_it_is_built() {
    for expr in [
        // 100 000 copies of a 1 MiB text.
        "len(join(map(range(100000), i => mib), mib))",
        "len(format('{}-{}', mib, a40))",
        "len(replace(mib, 'x', mib))",
        // A list that shares its parts: 2^40 items, taking a few hundred bytes.
        "len(to_json(a40))",
        "len(string(a40))",
        "len(join(a40, ','))",
        "len(flatten(map(range(100000), i => big)))",
        // Written out as the reason of the skip.
        "a40",
    ] {
        let err = bomb(expr).expect_err(expr);
        assert_eq!(err.kind, EvalErrorKind::Limit, "{expr}: {err}");
        assert_eq!(err.rule.as_deref(), Some("bomb"), "{expr}");
        assert!(err.to_string().contains("memory budget"), "{expr}: {err}");
    }
    // The same functions on sensible sizes are untouched.
    let plan = bomb("len(join(map(range(5), i => mib), ','))").expect("5 MiB fit");
    let skladsync_engine::Action::Skip { reason } = &plan.effects[0].action else {
        panic!("a skip");
    };
    assert_eq!(reason, &(5 * 1024 * 1024 + 4).to_string());
}

#[test]
fn a_shared_list_compares_equal_to_itself_at_once() {
    // 2^40 items to compare one by one otherwise.
    let plan = bomb("string(a40 == a40 and a40 in [a40])").expect("equal");
    let skladsync_engine::Action::Skip { reason } = &plan.effects[0].action else {
        panic!("a skip");
    };
    assert_eq!(reason, "true");
}

#[test]
fn a_plan_that_would_write_out_enormous_is_refused() {
    // The body shares its parts: 2^40 leaves in memory that takes a few kilobytes, and
    // terabytes once the plan is written out.
    for leaf in ["a40", "'[1, a40]'"] {
        let effect = format!("      - create: shop.thing\n        body:\n          v: {leaf}");
        let err = bomb_with(&effect).expect_err(leaf);
        assert_eq!(err.kind, EvalErrorKind::Limit, "{leaf}: {err}");
        assert!(err.to_string().contains("memory budget"), "{err}");
        let journal = format!(
            "      - journal:\n          code: BIG\n          text: '\"x\"'\n          subject: {leaf}"
        );
        let err = bomb_with(&journal).expect_err(leaf);
        assert_eq!(err.kind, EvalErrorKind::Limit, "{leaf}: {err}");
    }
    let small = bomb_with("      - create: shop.thing\n        body:\n          v: a10")
        .expect("a small body");
    assert!(serde_json::to_string(&small).expect("json").len() > 1024);
}

#[test]
fn templates_are_bounded_too() {
    let mut lets = String::from("      t0: '\"abcdefgh\"'\n");
    for i in 1..=40 {
        lets.push_str(&format!(
            "      t{i}: \"{{{{ t{0} }}}}{{{{ t{0} }}}}\"\n",
            i - 1
        ));
    }
    let set = rules(&format!(
        r#"
events:
  e:
    fields: {{n: which}}
rules:
  - id: template.bomb
    on: e
    let:
{lets}      list: 'map(range(100000), i => t15)'
      sep: t15
      joined: "{{{{ join(list, sep) }}}}"
    do:
      - if: n == 1
        skip: 'len(t40)'
      - if: n == 2
        skip: 'len(joined)'
"#
    ));
    for n in [1, 2] {
        let err = run(
            &set,
            &event(&format!(r#", "n": {n}"#)),
            EvalOptions::default(),
        )
        .expect_err("refused");
        assert_eq!(err.kind, EvalErrorKind::Limit, "{err}");
        assert_eq!(err.rule.as_deref(), Some("template.bomb"));
    }
}

#[test]
fn only_failed_lookups_are_worth_retrying() {
    let err = |kind| EvalError {
        kind,
        rule: None,
        flow: None,
        location: None,
        message: String::new(),
    };
    assert!(!err(EvalErrorKind::World).is_deterministic());
    for kind in [
        EvalErrorKind::Type,
        EvalErrorKind::Budget,
        EvalErrorKind::Limit,
    ] {
        assert!(err(kind).is_deterministic());
    }
}

#[test]
fn lets_nested_past_the_limit_are_an_error_not_a_stack_overflow() {
    // A chain of 5 000 lets, each needing the one before: the evaluator recurses once per
    // let, and without the limit this overflows the test thread's stack.
    let chain = |n: usize| {
        let mut lets = String::from("      s0: '1'\n");
        for i in 1..=n {
            lets.push_str(&format!("      s{i}: s{} + 1\n", i - 1));
        }
        rules(&format!(
            "events:\n  e:\n    fields: {{}}\nrules:\n  - id: chain\n    on: e\n    let:\n{lets}    do:\n      - skip: string(s{n})\n"
        ))
    };
    let err = run(&chain(5000), &event(""), EvalOptions::default()).expect_err("too deep");
    assert_eq!(err.kind, EvalErrorKind::Limit, "{err}");
    assert_eq!(err.rule.as_deref(), Some("chain"));
    assert!(
        err.to_string().contains("nested more than 100 deep"),
        "{err}"
    );
    let plan = run(&chain(50), &event(""), EvalOptions::default()).expect("50 deep is fine");
    let skladsync_engine::Action::Skip { reason } = &plan.effects[0].action else {
        panic!("a skip");
    };
    assert_eq!(reason, "51");
}

#[test]
fn a_loop_wrapping_a_value_in_itself_is_stopped_before_the_chain_overflows_the_stack() {
    // Without the limit the 100 000-deep chain overflows the stack when it is dropped or
    // written out, aborting the process.
    let set = rules(
        r#"
events:
  e:
    fields: {n: how many}
rules:
  - id: wrap.let
    on: e
    let:
      start: '[]'
    do:
      - let:
          chain: start
      - for: i
        in: range(n)
        do:
          - let:
              chain: '{up: chain, i: i}'
      - skip: '"done"'
"#,
    );
    let err = run(&set, &event(r#", "n": 100000"#), EvalOptions::default()).expect_err("deep");
    assert_eq!(err.kind, EvalErrorKind::Limit, "{err}");
    assert_eq!(err.rule.as_deref(), Some("wrap.let"));
    assert!(
        err.to_string().contains("more than 256 levels deep"),
        "{err}"
    );
    // Shallow loops are untouched.
    let plan = run(&set, &event(r#", "n": 100"#), EvalOptions::default()).expect("100 deep");
    assert_eq!(plan.effects.len(), 1);
}

#[test]
fn a_body_named_with_as_is_charged_as_one_without() {
    // A named body is weighed in the walk that checks its depth: what it is charged, and
    // the error when it does not fit, are those of the same body without a name.
    for body in [
        "a40",
        "'[1, a40]'",
        "a10",
        "mib",
        "'[mib, mib, mib, mib, mib, mib, mib, mib]'",
        "'{x: [mib, mib, mib], y: [mib, mib, mib, mib, mib]}'",
    ] {
        let effects = |name: &str| {
            format!(
                "      - create: shop.thing\n{name}        body:\n          v: {body}\n          \
                 w: '[mib, mib, mib, mib]'\n      - skip: 'len(join(map(range(3), i => mib), \"\"))'"
            )
        };
        let plain = bomb_with(&effects(""));
        let named = bomb_with(&effects("        as: thing\n"));
        match (plain, named) {
            // The same error, one line further down (the `as` line).
            (Err(a), Err(b)) => assert_eq!((a.kind, a.message), (b.kind, b.message), "{body}"),
            (Ok(a), Ok(b)) => {
                assert_eq!(a.effects.len(), b.effects.len(), "{body}");
                assert_eq!(a.effects[0].action, b.effects[0].action, "{body}");
            }
            (a, b) => panic!("{body}: {a:?} / {b:?}"),
        }
    }
}

#[test]
fn a_body_named_with_as_nests_at_most_256_deep() {
    let set = |n: usize| {
        rules(&format!(
            r#"
events:
  e:
    fields: {{}}
rules:
  - id: wrap.body
    on: e
    do:
      - let:
          chain: '[]'
      - for: i
        in: range({n})
        do:
          - let:
              chain: '{{up: chain}}'
      - create: shop.thing
        as: thing
        body: {{v: chain}}
"#
        ))
    };
    // The chain is n + 1 levels deep, the body one more.
    let plan = run(&set(254), &event(""), EvalOptions::default()).expect("256 deep");
    assert_eq!(plan.effects.len(), 1);
    let err = run(&set(255), &event(""), EvalOptions::default()).expect_err("257 deep");
    assert_eq!(err.kind, EvalErrorKind::Limit, "{err}");
    assert!(
        err.to_string().contains("more than 256 levels deep"),
        "{err}"
    );
    assert!(
        err.location
            .as_deref()
            .is_some_and(|l| l.starts_with("limits.yaml:16:")),
        "{err:?}"
    );
}
