//! `skladsync diff` (the dry run of a rule change) and `skladsync explain`, driven through
//! the real binary on a temporary copy of the shop example.

mod cli_support;

use std::path::Path;
use std::process::Command;

use cli_support::{copy_dir, edit, shop, skladsync, snapshot};

fn diff(base: &str, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "diff", "--base", base, "--corpus", "cases", "--rules", "rules",
    ];
    args.extend(extra);
    skladsync(&args, dir)
}

#[test]
fn an_unchanged_rule_set_shows_nothing() {
    let dir = shop();
    copy_dir(&dir.path().join("rules"), &dir.path().join("base"));
    let (code, stdout, stderr) = diff("base", dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(stderr, "no plan changed (7 events)\n");
}

#[test]
fn a_changed_condition_shows_exactly_the_affected_effects() {
    let dir = shop();
    copy_dir(&dir.path().join("rules"), &dir.path().join("base"));
    // Positions not in a reserving status now reserve one unit: only the order with such
    // a position changes, and only that field.
    edit(
        &dir.path().join("rules/shop.yaml"),
        "then i.quantity else 0",
        "then i.quantity else 1",
    );
    let (code, stdout, stderr) = diff("base", dir.path(), &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "upload_new_order.yaml  order.changed\n  \
         ~ order.upload: create wh.order as wh_order\n      \
         body.positions[1].reserve: 0 → 1\n\n\
         1 of 7 events have changed plans; per rule: order.upload: 1\n"
    );
    snapshot("diff_changed_condition", &stdout, dir.path());
}

#[test]
fn an_inserted_effect_does_not_shift_the_ones_after_it() {
    let dir = shop();
    copy_dir(&dir.path().join("rules"), &dir.path().join("base"));
    edit(
        &dir.path().join("rules/shop.yaml"),
        "      - link: {kind: order, shop: order.id, wh: wh_order.id}\n",
        "      - journal: {code: UPLOADED, level: info, text: '\"uploaded \" + order.number'}\n      - link: {kind: order, shop: order.id, wh: wh_order.id}\n",
    );
    let (code, stdout, _) = diff("base", dir.path(), &[]);
    assert_eq!(code, 1, "{stdout}");
    let changes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(['+', '-', '~']))
        .collect();
    // One added journal entry per uploaded order, nothing else.
    assert!(!changes.is_empty());
    assert!(
        changes
            .iter()
            .all(|l| l.trim_start() == "+ order.upload: journal UPLOADED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 of 7 events have changed plans; per rule: order.upload: 3"),
        "{stdout}"
    );
}

#[test]
fn the_base_can_be_a_git_revision_and_the_report_json() {
    let dir = shop();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "rules"]);
    git(&["commit", "-q", "-m", "rules"]);
    let (code, stdout, _) = diff("HEAD", dir.path(), &[]);
    assert_eq!((code, stdout.as_str()), (0, ""));

    // The phone no longer finds the customer: a customer is created instead.
    edit(
        &dir.path().join("rules/shop.yaml"),
        "{phone: customer.phone}",
        "{phone: customer.id}",
    );
    let (code, stdout, _) = diff("HEAD", dir.path(), &["--format", "json"]);
    assert_eq!(code, 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["events"], 7);
    assert_eq!(report["changed"], 1);
    assert_eq!(report["rules"], serde_json::json!({"order.upload": 1}));
    let event = &report["changes"][0];
    assert_eq!(event["source"], "existing_customer_is_reused.yaml");
    let kinds: Vec<&str> = event["effects"]
        .as_array()
        .expect("effects")
        .iter()
        .map(|c| c["change"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["added", "changed"], "{stdout}");
    assert_eq!(event["effects"][0]["effect"]["entity"], "customer");
    assert_eq!(event["effects"][1]["fields"][0]["path"], "body.agent");
    assert_eq!(event["effects"][1]["fields"][0]["before"], "cust-9");
    assert_eq!(
        event["effects"][1]["fields"][0]["after"],
        serde_json::json!({"$ref": "made.id"})
    );
}

#[test]
fn a_bad_base_is_an_error() {
    let dir = shop();
    let (code, _, stderr) = diff("no-such-revision", dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("neither a directory nor a git revision"),
        "{stderr}"
    );
}

#[test]
fn explain_shows_conditions_lets_and_the_reason() {
    let dir = shop();
    let (code, stdout, stderr) = skladsync(
        &[
            "explain",
            "--event",
            "cases/store_not_mapped.yaml",
            "--rules",
            "rules",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("rule order.upload: stopped at when[0], journal STORE_NOT_MAPPED"),
        "{stdout}"
    );
    assert!(stdout.contains("  let store = null"), "{stdout}");
    assert!(stdout.contains("  false when[0] store != null"), "{stdout}");
    assert!(
        stdout.contains("reason: journal STORE_NOT_MAPPED (error): Store far is not mapped"),
        "{stdout}"
    );
    snapshot("explain_store_not_mapped", &stdout, dir.path());

    let (code, stdout, _) = skladsync(
        &[
            "explain",
            "--event",
            "cases/customer_without_name_abandons_the_rule.yaml",
            "--rules",
            "rules",
            "--rule",
            "order.upload",
        ],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert!(
        stdout
            .contains("abandoned in flow customer.ensure at when[0], journal CUSTOMER_NAME_EMPTY"),
        "{stdout}"
    );
    assert!(!stdout.contains("order.payments.after"), "{stdout}");
    snapshot("explain_abandoned_in_flow", &stdout, dir.path());

    let (code, stdout, _) = skladsync(
        &[
            "explain",
            "--event",
            "cases/upload_new_order.yaml",
            "--rules",
            "rules",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(doc["rules"][0]["outcome"]["kind"], "fired");
    assert_eq!(doc["rules"][0]["conditions"][0]["holds"], true);
}
