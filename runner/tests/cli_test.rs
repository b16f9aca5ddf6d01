//! `skladsync test`: rule test cases as data, driven through the real binary on a temporary
//! copy of the shop example.

mod cli_support;

use cli_support::{edit, shop, skladsync, snapshot};

const RUN: &[&str] = &["test", "cases", "--rules", "rules", "--snapshots", "snaps"];

#[test]
fn good_cases_pass_against_the_repositorys_own_snapshots() {
    let dir = shop();
    let (code, stdout, stderr) = skladsync(RUN, dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.ends_with("7 passed, 0 failed\n"), "{stdout}");
    snapshot("test_all_pass", &stdout, dir.path());
}

#[test]
fn a_broken_rule_fails_with_a_readable_diff() {
    let dir = shop();
    // Reserve one unit of positions that should reserve nothing.
    edit(
        &dir.path().join("rules/shop.yaml"),
        "then i.quantity else 0",
        "then i.quantity else 1",
    );
    let (code, stdout, stderr) = skladsync(RUN, dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  upload_new_order"), "{stdout}");
    assert!(
        stdout.contains("body.positions[1].reserve: 0 → 1"),
        "the diff names the field: {stdout}"
    );
    assert!(stdout.ends_with("6 passed, 1 failed\n"), "{stdout}");
    snapshot("test_broken_rule", &stdout, dir.path());
}

#[test]
fn a_removed_effect_is_shown_as_missing() {
    let dir = shop();
    edit(
        &dir.path().join("rules/shop.yaml"),
        "      - link: {kind: order, shop: order.id, wh: wh_order.id}\n",
        "",
    );
    let (code, stdout, _) = skladsync(RUN, dir.path());
    assert_eq!(code, 1);
    assert!(stdout.contains("- order.upload: link order"), "{stdout}");
}

#[test]
fn update_writes_snapshots_and_inline_expectations() {
    let dir = shop();
    let snaps = dir.path().join("snaps");
    std::fs::remove_dir_all(&snaps).expect("rm");
    // One case keeps its expectation in the file: an empty `expect:` to fill in.
    let inline = dir.path().join("cases/store_not_mapped.yaml");
    let text = std::fs::read_to_string(&inline).expect("read");
    std::fs::write(&inline, format!("{text}# what the plan must be\nexpect:\n")).expect("write");

    let (code, stdout, _) = skladsync(RUN, dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("NEW   store_not_mapped"), "{stdout}");
    assert!(stdout.ends_with("0 passed, 7 failed\n"), "{stdout}");

    let mut args = RUN.to_vec();
    args.push("--update");
    let (code, stdout, _) = skladsync(&args, dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.ends_with("0 passed, 0 failed, 7 updated\n"),
        "{stdout}"
    );
    assert!(snaps.join("upload_new_order.snap").is_file());
    assert!(!snaps.join("store_not_mapped.snap").exists());
    let written = std::fs::read_to_string(&inline).expect("read");
    assert!(
        written.contains("# what the plan must be\nexpect:\n  event: order.changed\n"),
        "{written}"
    );
    assert!(written.contains("code: STORE_NOT_MAPPED"), "{written}");

    let (code, stdout, _) = skladsync(RUN, dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("7 passed, 0 failed\n"), "{stdout}");

    // An inline expectation that is wrong fails with the same kind of diff.
    edit(&inline, "code: STORE_NOT_MAPPED", "code: STORE_MISSING");
    let (code, stdout, _) = skladsync(RUN, dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("- order.upload: journal STORE_MISSING"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ order.upload: journal STORE_NOT_MAPPED"),
        "{stdout}"
    );
}

#[test]
fn coverage_reports_rules_and_conditions_and_enforces_a_minimum() {
    let dir = shop();
    let mut args = RUN.to_vec();
    args.push("--coverage");
    let (code, stdout, _) = skladsync(&args, dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("coverage: "), "{stdout}");
    assert!(stdout.contains("rule order.upload  fired"), "{stdout}");
    snapshot("test_coverage", &stdout, dir.path());

    // Without the unmapped-store case, `store != null` is never seen false.
    std::fs::remove_file(dir.path().join("cases/store_not_mapped.yaml")).expect("rm");
    let mut args = RUN.to_vec();
    args.extend(["--min-coverage", "100"]);
    let (code, stdout, _) = skladsync(&args, dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("is below the minimum 100%"), "{stdout}");
    assert!(
        stdout.contains("when[0] true: yes, false: no  store != null"),
        "{stdout}"
    );
    snapshot("test_coverage_below_minimum", &stdout, dir.path());

    let mut args = RUN.to_vec();
    args.extend(["--min-coverage", "80"]);
    let (code, stdout, _) = skladsync(&args, dir.path());
    assert_eq!(code, 0, "{stdout}");

    // Effect guards count too: without the case of a customer found, `if: found == null`
    // (create the customer) is never seen false.
    std::fs::remove_file(dir.path().join("cases/existing_customer_is_reused.yaml")).expect("rm");
    let mut args = RUN.to_vec();
    args.push("--coverage");
    let (_, stdout, _) = skladsync(&args, dir.path());
    assert!(
        stdout.contains("flow customer.ensure  1/1 conditions both ways, 0/1 effect ifs both ways"),
        "{stdout}"
    );
    assert!(
        stdout.contains("if taken: yes, not: no  found == null  rules/shop.yaml:23:"),
        "{stdout}"
    );
}

/// A case with a YAML error fails on its own, with a code frame and a hint about
/// indentation (not quoting); the other cases still run.
#[test]
fn a_broken_case_is_reported_and_the_others_run() {
    let dir = shop();
    std::fs::write(
        dir.path().join("cases/broken.yaml"),
        "doc: one key indented one space too few\nevent:\n  event: order.changed\n  order: {id: 1}\n world: {}\n",
    )
    .expect("write");
    let (code, stdout, stderr) = skladsync(RUN, dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("FAIL  broken"), "{stdout}");
    assert!(stdout.contains("broken.yaml:5:"), "a code frame: {stdout}");
    assert!(stdout.contains("check the indentation"), "{stdout}");
    assert!(!stdout.contains("quote an expression"), "{stdout}");
    assert!(stdout.ends_with("7 passed, 1 failed\n"), "{stdout}");
}

/// A case that includes a shared fragment states only what differs: the world moved to
/// `worlds/shop.yaml` gives the same plan (the same snapshot passes).
#[test]
fn a_case_includes_a_shared_world_fragment() {
    let dir = shop();
    let case_path = dir.path().join("cases/existing_customer_is_reused.yaml");
    let mut case: serde_yaml::Mapping =
        serde_yaml::from_str(&std::fs::read_to_string(&case_path).expect("read")).expect("yaml");
    let world = case.remove("world").expect("the case has a world");
    let mut fragment = serde_yaml::Mapping::new();
    fragment.insert("world".into(), world);
    std::fs::create_dir_all(dir.path().join("worlds")).expect("mkdir");
    std::fs::write(
        dir.path().join("worlds/shop.yaml"),
        serde_yaml::to_string(&fragment).expect("yaml"),
    )
    .expect("write");
    case.insert(
        "include".into(),
        serde_yaml::Value::Sequence(vec!["../worlds/shop.yaml".into()]),
    );
    std::fs::write(&case_path, serde_yaml::to_string(&case).expect("yaml")).expect("write");
    let (code, stdout, stderr) = skladsync(RUN, dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.ends_with("7 passed, 0 failed\n"), "{stdout}");
    // Without the fragment the plan differs: the include is what carries the world.
    std::fs::write(dir.path().join("worlds/shop.yaml"), "world: {}\n").expect("write");
    let (code, stdout, _) = skladsync(RUN, dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  existing_customer_is_reused"),
        "{stdout}"
    );
}

/// A misspelt event name fails the case, with a suggestion, instead of an empty plan.
#[test]
fn a_misspelt_event_name_fails_the_case() {
    let dir = shop();
    edit(
        &dir.path().join("cases/upload_new_order.yaml"),
        "event: order.changed",
        "event: order.chnged",
    );
    let (code, stdout, _) = skladsync(RUN, dir.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "no rule file declares the event `order.chnged`; did you mean `order.changed`?"
        ),
        "{stdout}"
    );
}

/// `plan` takes a case file: its world and settings are used, and the plan is the case's.
#[test]
fn plan_accepts_a_case_file() {
    let dir = shop();
    let (code, stdout, stderr) = skladsync(
        &[
            "plan",
            "--event",
            "cases/upload_new_order.yaml",
            "--rules",
            "rules",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let snap =
        std::fs::read_to_string(dir.path().join("snaps/upload_new_order.snap")).expect("snapshot");
    let body = snap.splitn(3, "---\n").nth(2).expect("a snapshot body");
    assert_eq!(stdout, body);
}

/// `case new` writes a scaffold with the event's declared fields; an undeclared event is
/// refused with a suggestion.
#[test]
fn case_new_writes_a_scaffold() {
    let dir = shop();
    let (code, stdout, stderr) = skladsync(
        &[
            "case",
            "new",
            "cases/new_one.yaml",
            "--event",
            "order.changed",
            "--include",
            "../worlds/shop.yaml",
            "--rules",
            "rules",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = std::fs::read_to_string(dir.path().join("cases/new_one.yaml")).expect("written");
    assert!(text.contains("  event: order.changed\n"), "{text}");
    assert!(text.contains("  - ../worlds/shop.yaml\n"), "{text}");
    assert!(text.contains("  order: null\n"), "{text}");
    let (code, _, stderr) = skladsync(
        &[
            "case",
            "new",
            "cases/other.yaml",
            "--event",
            "order.chnged",
            "--rules",
            "rules",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("did you mean `order.changed`?"), "{stderr}");
}

/// `case shrink` rewrites a case to state only what differs from its fragment (the event's
/// differing keys, no world row the fragment holds), and the case gives the same plan; a
/// case whose plan would move (a row it repeats on purpose: twice, the lookup of one
/// customer is ambiguous) is left byte for byte. `--check` says so and exits 1, and nothing
/// is left to do after a run.
#[test]
fn case_shrink_keeps_only_what_differs_and_never_the_plan() {
    let dir = shop();
    std::fs::create_dir_all(dir.path().join("worlds")).expect("mkdir");
    let zed = "{id: cust-1, name: Zed, phone: \"+70000000000\"}";
    let bob = "{id: cust-9, name: Bob, phone: \"+79990000000\"}";
    std::fs::write(
        dir.path().join("worlds/shop.yaml"),
        format!("event:\n  order: {{number: A-8, store: main, status: approved, customer: {{id: 4, name: Bob, phone: \"+79990000000\"}}, items: [{{sku: A-1, quantity: 1, price: 100, status: ok}}]}}\n  statuses: [approved]\nworld:\n  entities:\n    wh.customer:\n      - {zed}\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("worlds/bob.yaml"),
        format!("include: [shop.yaml]\nworld:\n  entities:\n    wh.customer:\n      - {bob}\n"),
    )
    .expect("write");
    let reused = dir.path().join("cases/existing_customer_is_reused.yaml");
    edit(
        &reused,
        "event:\n",
        "include: [../worlds/shop.yaml]\nevent:\n",
    );
    edit(
        &reused,
        "      - {id: cust-9",
        &format!("      - {zed}\n      - {{id: cust-9"),
    );
    // A rule for which a repeated row matters: it acts only when exactly one customer has
    // the phone.
    std::fs::write(
        dir.path().join("rules/dupes.yaml"),
        "rules:\n  - id: customers.counted\n    doc: Only when exactly one warehouse customer has the phone.\n    on: order.changed\n    when:\n      - check: 'len(lookup(\"wh\", \"customer\", {phone: order.customer.phone})) == 1'\n        skip: '\"not exactly one customer\"'\n    do:\n      - link: {kind: phone, shop: order.id, wh: order.customer.phone}\n",
    )
    .expect("write");
    let twice = dir.path().join("cases/twice.yaml");
    std::fs::write(
        &twice,
        format!("doc: Two customers with one phone.\ninclude: [../worlds/bob.yaml]\nevent:\n  event: order.changed\n  order: {{id: 9}}\nworld:\n  entities:\n    wh.customer:\n      - {bob}\nexpect: {{effects: []}}\n"),
    )
    .expect("write");
    let (_, before, _) = skladsync(RUN, dir.path());
    let reused_before = std::fs::read_to_string(&reused).expect("read");
    let twice_before = std::fs::read_to_string(&twice).expect("read");

    let shrink = ["case", "shrink", "cases", "--rules", "rules"];
    let (code, stdout, stderr) = skladsync(&[&shrink[..], &["--check"]].concat(), dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("would shrink cases/existing_customer_is_reused.yaml: 17 → "),
        "{stdout}"
    );
    assert!(!stdout.contains("twice"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&reused).expect("read"),
        reused_before,
        "--check writes nothing"
    );

    let (code, stdout, stderr) = skladsync(&shrink, dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    let after = std::fs::read_to_string(&reused).expect("read");
    assert!(
        after.starts_with("doc: The customer already exists on the warehouse side (same phone), so no customer is created.\ninclude: [../worlds/shop.yaml]\nevent:\n  event: order.changed\n  order:\n    id: 8\nworld:\n"),
        "{after}"
    );
    assert!(
        after.contains("name: Bob") && !after.contains("Zed"),
        "{after}"
    );
    assert_eq!(
        std::fs::read_to_string(&twice).expect("read"),
        twice_before,
        "the case whose plan would change is left as it was"
    );
    // The same plans: every case passes or fails as before.
    let (_, after_run, _) = skladsync(RUN, dir.path());
    assert_eq!(after_run, before);
    // Idempotent: nothing left to shrink.
    let (code, stdout, _) = skladsync(&[&shrink[..], &["--check"]].concat(), dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("0 file(s) would change\n"), "{stdout}");
}

/// `case shrink --base` gathers what cases of one event that include no fragment share into
/// `worlds/FOLDER__EVENT.shared.yaml`; they include it, state only what differs and keep
/// their plans.
#[test]
fn case_shrink_base_gathers_a_shared_fragment() {
    let dir = shop();
    std::fs::create_dir_all(dir.path().join("worlds")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("cases/big")).expect("mkdir");
    let mut original = String::new();
    for (id, status) in [(21, "new"), (22, "new"), (23, "approved")] {
        let path = dir.path().join(format!("cases/big/order_{id}.yaml"));
        std::fs::write(
            &path,
            format!("doc: Order {id}.\nevent:\n  event: order.changed\n  now: \"2024-05-01 10:00:00\"\n  order:\n    id: {id}\n    number: A-{id}\n    store: main\n    status: {status}\n    customer: {{id: 3, name: Ann, phone: \"+79031234567\"}}\n    items:\n      - {{sku: A-1, quantity: 2, price: 19.99, status: ok}}\n      - {{sku: C-3, quantity: 3, price: 0.1, status: new}}\n    payments:\n      - {{id: 1, amount: 10.5}}\n  statuses: [new, sent]\nworld:\n  entities:\n    wh.customer:\n      - {{id: cust-1, name: Ann, phone: \"+79031234567\"}}\n"),
        )
        .expect("write");
        original = std::fs::read_to_string(&path).expect("read");
    }
    let (_, before, _) = skladsync(RUN, dir.path());
    let (code, stdout, stderr) = skladsync(
        &["case", "shrink", "cases/big", "--base", "--rules", "rules"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let shared = dir.path().join("worlds/big__order.changed.shared.yaml");
    let fragment = std::fs::read_to_string(&shared).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    assert!(
        fragment.contains("name: Ann") && fragment.contains("sku: A-1"),
        "{fragment}"
    );
    let shrunk = "doc: Order 23.\ninclude: [../../worlds/big__order.changed.shared.yaml]\nevent:\n  event: order.changed\n  order:\n    id: 23\n    number: A-23\n    status: approved\n";
    let case_path = dir.path().join("cases/big/order_23.yaml");
    assert_eq!(std::fs::read_to_string(&case_path).expect("read"), shrunk);
    // A case written whole again (say, by a merge) finds the shared fragment on its own.
    std::fs::write(&case_path, &original).expect("write");
    let (code, stdout, stderr) = skladsync(
        &["case", "shrink", "cases/big", "--rules", "rules"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(std::fs::read_to_string(&case_path).expect("read"), shrunk);
    let (_, after, _) = skladsync(RUN, dir.path());
    assert_eq!(after, before, "every case passes (or fails) as before");
    let (code, stdout, _) = skladsync(
        &[
            "case",
            "shrink",
            "cases/big",
            "--base",
            "--check",
            "--rules",
            "rules",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "idempotent: {stdout}");
}
