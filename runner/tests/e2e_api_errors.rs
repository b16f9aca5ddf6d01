//! Errors as the services give them, end to end: a rule whose "search before create" lookup
//! names a field МойСклад cannot filter by fails loudly (the API refuses the filter with
//! 1034 and the daemon journals it) instead of finding nothing and creating a duplicate.

#[path = "fixtures/e2e/support.rs"]
mod support;

use skladsync_runner::demo::lab::LabOptions;
use support::{fixture_rules, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_lookup_field_is_journalled_not_a_duplicate() {
    // The test rule set with the counterparty search's `phone` misspelt.
    let rules = tempfile::tempdir().expect("tempdir");
    let sync = std::fs::read_to_string(fixture_rules().join("sync.yaml")).expect("rules");
    let typo = sync.replace(
        r#"lookup_one("moysklad", "counterparty", {phone: order.phone})"#,
        r#"lookup_one("moysklad", "counterparty", {phnoe: order.phone})"#,
    );
    assert_ne!(sync, typo, "the fixture still has the phone lookup");
    std::fs::write(rules.path().join("sync.yaml"), typo).expect("write rules");

    let rig = start_with(rules.path().to_path_buf(), false, LabOptions::default()).await;
    let lab = &rig.lab;
    rig.daemon.cycle().await.expect("cycle");
    rig.daemon.drain().await.expect("drain");

    // …and the failure is in the journal for the operator, with the API's error.
    let entries = rig
        .daemon
        .state()
        .journal_entries(rig.daemon.journal_limits(), support::now())
        .expect("journal");
    // The failure is in the journal for the operator, with the API's error…
    assert!(
        entries.iter().any(|e| e.code == "LOOKUP_FAILED"
            && e.text.contains("1034")
            && e.text.contains("phnoe")),
        "{entries:#?}"
    );
    // …because the filter was refused with the real error…
    assert!(lab.ms.requests().iter().any(|r| r.status == 412
        && r.path.ends_with("/entity/counterparty")
        && r.query.as_deref().is_some_and(|q| q.contains("phnoe"))));
    // …so no second counterparty with A-1001's phone was made (with a silent empty answer,
    // A-1001 — the first order evaluated — would have created one next to the seeded one).
    let same_phone = lab
        .ms
        .list("counterparty")
        .into_iter()
        .filter(|c| c["phone"] == "+79001234567")
        .count();
    assert_eq!(same_phone, 1, "{:#?}", lab.ms.list("counterparty"));
}
