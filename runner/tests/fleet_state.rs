//! The state of many pairs in one sled database (issue 15, item 1): pair `default` is the
//! single-pair state as it is, every other pair its own tree; pairs open side by side in one
//! process; the operator commands read one pair (`--pair`).

use serde_json::json;
use skladsync_runner::config::StateConfig;
use skladsync_runner::state::{open_pair_state, SyncState, DEFAULT_PAIR};

fn config(dir: &std::path::Path) -> StateConfig {
    serde_yaml::from_str(&format!(
        "path: {:?}",
        dir.join("state").display().to_string()
    ))
    .expect("state config")
}

#[tokio::test]
async fn a_single_pair_state_is_the_default_pair_and_other_pairs_are_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    // A state written by a single-pair runner.
    {
        let single = SyncState::open(&cfg.path).expect("single");
        single.set_cursor("crm.orders", &json!(41)).expect("cursor");
        single.flush().expect("flush");
    }

    // Opened as pairs, side by side in one process (one database, a tree each).
    let default = open_pair_state(&cfg, DEFAULT_PAIR).await.expect("default");
    let shop = open_pair_state(&cfg, "shop-2").await.expect("shop-2");
    assert_eq!(
        default.cursor("crm.orders").expect("cursor"),
        Some(json!(41)),
        "the single-pair state is pair `default`"
    );
    assert_eq!(shop.cursor("crm.orders").expect("cursor"), None);
    shop.set_cursor("crm.orders", &json!(7)).expect("cursor");
    default
        .set_cursor("crm.orders", &json!(42))
        .expect("cursor");
    assert_eq!(shop.cursor("crm.orders").expect("cursor"), Some(json!(7)));
    assert!(open_pair_state(&cfg, "Bad/Id").await.is_err());
    drop((default, shop));

    // Durable, and readable by the operator commands one pair at a time.
    let limits = skladsync_runner::config::JournalConfig::default().limits();
    let read = |pair: &str| {
        skladsync_runner::ops::read_pair_state(&cfg.path, pair, limits).expect("read")["cursors"]
            ["crm.orders"]
            .clone()
    };
    assert_eq!(read("shop-2"), json!(7));
    assert_eq!(read(DEFAULT_PAIR), json!(42));
    // The single-pair runner still opens it.
    let single = SyncState::open(&cfg.path).expect("single again");
    assert_eq!(
        single.cursor("crm.orders").expect("cursor"),
        Some(json!(42))
    );
}
