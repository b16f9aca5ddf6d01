//! The sled state on disk: owner-only permissions, and everything written survives a reopen.

use serde_json::json;
use skladsync_runner::state::{JournalEntry, JournalLimits, Link, SyncState, Work};

fn entry(time: i64, code: &str) -> JournalEntry {
    JournalEntry {
        time,
        first: time,
        count: 1,
        direction: "crm→moysklad".into(),
        rule: "order.upload".into(),
        code: code.into(),
        level: "error".into(),
        text: "text".into(),
        subject: json!({"crm_order": time}),
        raw: json!({"status": 412}),
    }
}

#[cfg(unix)]
#[test]
fn the_state_directory_and_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/state");
    let state = SyncState::open(&path).expect("open");
    state.set_cursor("x", &json!(1)).expect("write");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    for e in std::fs::read_dir(&path).expect("read dir") {
        let p = e.expect("entry").path();
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p), want, "{}", p.display());
    }
}

#[test]
fn what_was_written_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state");
    let limits = JournalLimits {
        max_entries: 3,
        max_age_ms: 1_000_000,
    };
    {
        let s = SyncState::open(&path).expect("open");
        s.put_link(&Link {
            kind: "order".into(),
            ids: [
                ("crm".to_string(), json!(7)),
                ("moysklad".to_string(), json!("a-1")),
            ]
            .into_iter()
            .collect(),
        })
        .expect("link");
        s.set_cursor("crm.history.orders", &json!(42))
            .expect("cursor");
        s.set_order_statuses(7, &["new".into(), "assembling".into()])
            .expect("statuses");
        s.enqueue(
            Work::Moysklad {
                entity: "demand".into(),
                action: "created".into(),
                id: "d-1".into(),
                href: "h".into(),
                updated_fields: vec![],
                request_id: Some("r-1".into()),
                source: skladsync_runner::state::Source::Webhook,
            },
            1,
        )
        .expect("enqueue");
        s.mark_request("r-1", i64::MAX).expect("dedupe");
        for i in 0..5 {
            s.journal(entry(100 + i, &format!("C{i}")), limits)
                .expect("journal");
        }
    }
    let s = SyncState::open(&path).expect("reopen");
    assert_eq!(
        s.linked("order", "moysklad", &json!("a-1"))
            .expect("link")
            .map(|l| l.ids["crm"].clone()),
        Some(json!(7))
    );
    assert_eq!(
        s.cursor("crm.history.orders").expect("cursor"),
        Some(json!(42))
    );
    assert_eq!(
        s.order_statuses(7).expect("statuses"),
        Some(vec!["new".to_string(), "assembling".to_string()])
    );
    assert_eq!(s.inbox().expect("inbox").len(), 1);
    assert!(s.request_seen("r-1", 0).expect("dedupe"));
    let journal = s.journal_entries(limits, 200).expect("journal");
    let codes: Vec<&str> = journal.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["C4", "C3", "C2"], "newest first, at most 3");
}
