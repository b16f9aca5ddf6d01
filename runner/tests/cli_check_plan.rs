//! `skladsync check` and `skladsync plan` driven as a user would: the real binary on rule
//! files in a temporary directory.

use std::path::Path;
use std::process::Command;

fn skladsync(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const EVENTS: &str = "events:\n  order.placed:\n    fields: {order: the order}\n";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("dirs");
    }
    std::fs::write(path, text).expect("write");
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => "../../snapshots/cli",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn check_reports_a_broken_expression_with_position_and_caret() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules/events.yaml", EVENTS);
    write(
        dir.path(),
        "rules/orders.yaml",
        "rules:\n  - id: order.copy\n    on: order.placed\n    let:\n      total: 'order.items | sum(i => i.price *)'\n      store: settings.stors[order.store]\n",
    );
    write(dir.path(), "rules/settings.yaml", "stores: {main: st-1}\n");
    let (code, stdout, stderr) = skladsync(&["check"], dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("rules/orders.yaml:5:"), "{stderr}");
    assert!(stderr.contains("rules/orders.yaml:6:"), "{stderr}");
    snapshot("check_broken_expression_and_missing_setting", &stderr);
}

#[test]
fn check_is_clean_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules/events.yaml", EVENTS);
    write(
        dir.path(),
        "rules/orders.yaml",
        "rules:\n  - id: order.copy\n    on: order.placed\n    do:\n      - create: wh.order\n        body: {name: order.number}\n",
    );
    let (code, stdout, stderr) = skladsync(&["check"], dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: 1 rules in 2 files"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn usage_errors_exit_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = skladsync(&["check", "--no-such-flag"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = skladsync(&["plan"], dir.path());
    assert_eq!(code, 2);
}

#[test]
fn plan_prints_a_deterministic_plan_whose_effects_name_their_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules/events.yaml", EVENTS);
    write(
        dir.path(),
        "rules/orders.yaml",
        "rules:\n  - id: order.copy\n    on: order.placed\n    when:\n      - check: order.total > 0\n        journal: EMPTY_ORDER\n    do:\n      - create: wh.order\n        as: copy\n        key: '\"order-\" + order.id'\n        body:\n          name: \"Order {{ order.number }}\"\n          cents: order.total * 100\n      - link: {kind: order, shop: order.id, wh: copy.id}\n",
    );
    write(
        dir.path(),
        "event.yaml",
        "event: order.placed\nnow: \"2024-05-01 10:00:00\"\norder: {id: 7, number: A-7, total: 19.99}\n",
    );
    let (code, first, stderr) = skladsync(&["plan", "--event", "event.yaml"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let (_, second, _) = skladsync(&["plan", "--event", "event.yaml"], dir.path());
    assert_eq!(first, second, "plans must be byte-identical");
    assert!(first.contains("rule: order.copy"), "{first}");
    assert!(first.contains("cents: 1999"), "{first}");
    let (code, json, _) = skladsync(
        &["plan", "--event", "event.yaml", "--format", "json"],
        dir.path(),
    );
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("json plan");
    assert_eq!(parsed["effects"][1]["ids"]["wh"]["$ref"], "copy.id");
    snapshot("plan_yaml", &first);
}

#[test]
fn plan_timings_profile_each_rule_of_the_event_on_stderr_and_leave_the_plan_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "rules/events.yaml",
        "events:\n  order.placed:\n    fields: {order: the order}\n  order.gone:\n    fields: {order: the order}\n",
    );
    write(
        dir.path(),
        "rules/orders.yaml",
        "rules:\n  - id: order.lines\n    on: order.placed\n    do:\n      - for: l\n        in: order.lines\n        do:\n          - create: wh.line\n            body: {sku: l.sku, cents: l.price * 100}\n  - id: order.skip\n    on: order.placed\n    when:\n      - order.total < 0\n    do:\n      - create: wh.refund\n        body: {id: order.id}\n  - id: order.drop\n    on: order.gone\n    do:\n      - delete: wh.order\n        id: order.id\n",
    );
    write(
        dir.path(),
        "event.yaml",
        "event: order.placed\norder: {id: 7, total: 3, lines: [{sku: a, price: 1}, {sku: b, price: 2}, {sku: c, price: 3}]}\n",
    );
    let (code, plain, _) = skladsync(&["plan", "--event", "event.yaml"], dir.path());
    assert_eq!(code, 0);
    let (code, timed, stderr) = skladsync(
        &["plan", "--event", "event.yaml", "--timings", "7"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(plain, timed, "the plan on stdout is the same");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].starts_with("rule "), "{stderr}");
    assert!(lines[0].contains("(7 evaluations)"), "{stderr}");
    // The two rules of the event and the total; the rule of the other event is not run.
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(!stderr.contains("order.drop"), "{stderr}");
    let steps = |rule: &str| -> u64 {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(rule))
            .unwrap_or_else(|| panic!("{rule} in {stderr}"));
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("steps of {rule}: {line}"))
    };
    // Per evaluation: the loop's three creates cost more steps than one failed condition.
    assert!(steps("order.lines") > steps("order.skip"), "{stderr}");
    assert!(steps("order.skip") >= 1, "{stderr}");
    assert_eq!(
        steps("all"),
        steps("order.lines") + steps("order.skip"),
        "{stderr}"
    );
    // Without a count: 100 evaluations.
    let (code, _, stderr) = skladsync(&["plan", "--event", "event.yaml", "--timings"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(100 evaluations)"), "{stderr}");
}

#[test]
fn plan_reports_bad_inputs_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules/events.yaml", EVENTS);
    write(dir.path(), "event.yaml", "order: {id: 1}\n");
    let (code, _, stderr) = skladsync(&["plan", "--event", "event.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("no `event` key"), "{stderr}");
    let (code, _, stderr) = skladsync(&["plan", "--event", "missing.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.yaml"), "{stderr}");
}

/// `skladsync eval` evaluates one expression against an event, with the rule set's
/// functions and settings, and prints the value; a misspelt name is a diagnostic.
#[test]
fn eval_prints_the_value_of_one_expression() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules/events.yaml", EVENTS);
    write(
        dir.path(),
        "rules/functions.yaml",
        "functions:\n  code(o): o.offer.xmlId + \"-\" + settings.suffix\n",
    );
    write(dir.path(), "rules/settings.yaml", "suffix: x\n");
    write(
        dir.path(),
        "event.yaml",
        "event: order.placed\norder:\n  items:\n    - offer: {xmlId: a1}\n    - offer: {xmlId: b2}\n",
    );
    let (code, stdout, stderr) = skladsync(
        &[
            "eval",
            "order.items | map(i => i.offer.xmlId)",
            "--event",
            "event.yaml",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "- a1\n- b2\n");
    let (code, stdout, stderr) = skladsync(
        &[
            "eval",
            "order.items | map(i => code(i))",
            "--event",
            "event.yaml",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "[\"a1-x\",\"b2-x\"]\n");
    let (code, _, stderr) = skladsync(&["eval", "ordr.items", "--event", "event.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("did you mean `order`?"), "{stderr}");
}

/// `check` on the shipped rules refuses a settings file with a text for a boolean, at the
/// settings file's line and column.
#[test]
fn check_refuses_mistyped_settings_at_their_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let example =
        std::fs::read_to_string(root.join("rules/settings.example.yaml")).expect("example");
    let line = example[..example.find("  delivery_as_position: false").expect("key")]
        .matches('\n')
        .count()
        + 1;
    write(
        dir.path(),
        "settings.yaml",
        &example.replacen(
            "  delivery_as_position: false",
            "  delivery_as_position: \"no\"",
            1,
        ),
    );
    let rules = root.join("rules").display().to_string();
    let (code, stdout, stderr) = skladsync(
        &["check", "--rules", &rules, "--settings", "settings.yaml"],
        dir.path(),
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("settings.yaml:{line}:25")),
        "{stderr}"
    );
    assert!(stderr.contains("error: 1 error(s)"), "{stderr}");
}

/// `--layer`: an integrator's directory over the rules replaces a rule by id and disables
/// another without editing them; `explain` names the layer a rule came from.
#[test]
fn a_layer_replaces_and_disables_rules_and_explain_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules/events.yaml", EVENTS);
    write(
        dir.path(),
        "rules/orders.yaml",
        "rules:\n  - id: a\n    on: order.placed\n    do:\n      - journal: {code: A, text: \"'base'\"}\n  - id: b\n    on: order.placed\n    do:\n      - journal: {code: B, text: \"'base'\"}\n",
    );
    write(
        dir.path(),
        "mine/a.yaml",
        "disable: [b]\nrules:\n  - id: a\n    on: order.placed\n    do:\n      - journal: {code: A, text: \"'mine'\"}\n",
    );
    write(
        dir.path(),
        "event.yaml",
        "event: order.placed\norder: {id: 1}\n",
    );
    let (code, stdout, stderr) = skladsync(
        &[
            "plan",
            "--event",
            "event.yaml",
            "--layer",
            "mine",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("\"text\": \"mine\""), "{stdout}");
    assert!(!stdout.contains("\"code\": \"B\""), "{stdout}");
    let (code, stdout, stderr) = skladsync(
        &["explain", "--event", "event.yaml", "--layer", "mine"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("from layer mine (mine/a.yaml:"), "{stdout}");
    write(dir.path(), "mine/a.yaml", "disable: [c]\n");
    let (code, _, stderr) = skladsync(&["check", "--layer", "mine"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("E218"), "{stderr}");
    assert!(stderr.contains("mine/a.yaml:1:"), "{stderr}");
}

/// Without `--layer`, the tools take the layers of `./skladsync.yaml` (the daemon's config).
#[test]
fn the_tools_take_the_layers_of_the_project_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules/events.yaml", EVENTS);
    write(
        dir.path(),
        "rules/orders.yaml",
        "rules:\n  - id: a\n    on: order.placed\n    do:\n      - journal: {code: A, text: \"'base'\"}\n",
    );
    write(
        dir.path(),
        "mine/a.yaml",
        "rules:\n  - id: a\n    on: order.placed\n    do:\n      - journal: {code: A, text: \"'mine'\"}\n",
    );
    write(
        dir.path(),
        "event.yaml",
        "event: order.placed\norder: {id: 1}\n",
    );
    write(
        dir.path(),
        "skladsync.yaml",
        "rules:\n  dir: rules\n  layers: [mine]\n",
    );
    let (code, stdout, stderr) = skladsync(&["plan", "--event", "event.yaml"], dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("text: mine"), "{stdout}");
}
