//! The PostgreSQL state: the store behaves as sled does (order, atomic batches, pairs kept
//! apart), the schema is migrated once and a newer one refused, and the lease fences a
//! runner that lost it: it cannot commit anything.
//!
//! A private PostgreSQL cluster is started for this test binary (see
//! `skladsync_runner::demo::pg_cluster`); PostgreSQL missing fails the tests with a message
//! saying how to install it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use skladsync_runner::config::{StateBackend, StateConfig};
use skladsync_runner::demo::pg_cluster::PgCluster;
use skladsync_runner::state::lease::PairLease;
use skladsync_runner::state::{
    open_pair_state_sync, LeaseAttempt, Link, Outbox, PgDatabase, StateError, Store, SyncState,
    Work,
};

fn database(name: &str) -> String {
    let cluster = PgCluster::shared().unwrap_or_else(|e| panic!("{e}"));
    cluster.database(name).expect("database")
}

fn config(url: &str) -> StateConfig {
    let mut c = StateConfig::sled("/nonexistent/state".into());
    c.backend = StateBackend::Postgres;
    c.url = skladsync_runner::config::Secret::new(url);
    c
}

/// Raw SQL against the database (what another runner, or an operator, does).
async fn sql(url: &str, text: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(conn);
    client.batch_execute(text).await.expect("sql");
    drop(client);
    let _ = task.await;
}

fn link(crm: i64, ms: &str) -> Link {
    Link {
        kind: "order".into(),
        ids: [
            ("crm".to_string(), json!(crm)),
            ("moysklad".to_string(), json!(ms)),
        ]
        .into_iter()
        .collect(),
    }
}

// The current-thread runtime on purpose: the store is synchronous and is called from async
// code; it must neither panic nor deadlock there.
#[tokio::test]
async fn the_store_orders_scans_applies_batches_and_keeps_pairs_apart() {
    let url = database("store");
    let db = PgDatabase::connect(&url, 2).expect("open");
    let a = db.store("a");
    let b = db.store("b");
    // Keys in byte order, 0xff included, as sled gives them.
    a.apply(vec![
        (b"p/\x01".to_vec(), Some(b"1".to_vec())),
        (b"p/\xff\x00".to_vec(), Some(b"3".to_vec())),
        (b"p/\x7f".to_vec(), Some(b"2".to_vec())),
        (b"q/".to_vec(), Some(b"other prefix".to_vec())),
        (b"p".to_vec(), Some(b"shorter".to_vec())),
    ])
    .expect("apply");
    let keys: Vec<Vec<u8>> = a
        .scan_prefix(b"p/")
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![
            b"p/\x01".to_vec(),
            b"p/\x7f".to_vec(),
            b"p/\xff\x00".to_vec()
        ]
    );
    // The other pair sees none of it.
    assert!(b.scan_prefix(b"").expect("scan").is_empty());
    assert_eq!(b.get(b"q/").expect("get"), None);
    // In one batch the last write of a key wins (removed then written: written).
    a.apply(vec![
        (b"q/".to_vec(), None),
        (b"q/".to_vec(), Some(b"again".to_vec())),
        (b"p".to_vec(), Some(b"x".to_vec())),
        (b"p".to_vec(), None),
    ])
    .expect("apply");
    assert_eq!(a.get(b"q/").expect("get"), Some(b"again".to_vec()));
    assert_eq!(a.get(b"p").expect("get"), None);

    // The typed state over it, from async code on this current-thread runtime.
    let state = open_pair_state_sync(&config(&url), "shop-1").expect("state");
    let seq = state.enqueue(Work::SettingsSaved, 0).expect("enqueue");
    assert_eq!(state.inbox_len().expect("len"), 1);
    let plan: skladsync_engine::Plan =
        serde_json::from_value(json!({"event": "settings.saved", "effects": []})).expect("plan");
    state
        .start_plan(&Outbox {
            seq,
            plan,
            started: 1,
            done: BTreeMap::new(),
            rules: String::new(),
        })
        .expect("start plan");
    state
        .link_done(seq, 0, &link(7, "m7"), &json!({"id": "m7"}))
        .expect("link done");
    let again = open_pair_state_sync(&config(&url), "shop-1").expect("state");
    assert_eq!(
        again.plan(seq).expect("plan").expect("recorded").done[&0],
        json!({"id": "m7"})
    );
    assert_eq!(
        again
            .linked("order", "crm", &json!(7))
            .expect("linked")
            .expect("link"),
        link(7, "m7")
    );
    // Another pair in the same database starts empty.
    let other = open_pair_state_sync(&config(&url), "shop-2").expect("state");
    assert!(other.links().expect("links").is_empty());
    assert_eq!(other.inbox_len().expect("len"), 0);
}

#[tokio::test]
async fn the_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let url = database("migrations");
    PgDatabase::connect(&url, 1).expect("first open migrates");
    // Opened again (another runner, a restart): nothing to do, no error.
    PgDatabase::connect(&url, 1).expect("second open");
    sql(
        &url,
        "insert into skladsync_migrations (version, applied_by) values (99, 'skladsync from the future')",
    )
    .await;
    let err = PgDatabase::connect(&url, 1).expect_err("a newer schema is refused");
    assert!(
        matches!(err, StateError::NewerSchema { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn a_bad_url_and_an_unreachable_server_are_clear_errors() {
    let err = open_pair_state_sync(&config("postgres://x@127.0.0.1:notaport/db"), "p")
        .expect_err("bad url");
    assert!(matches!(err, StateError::Config(_)), "{err:?}");
    // A port nobody listens on (this cluster's port + nothing: bind and drop one).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgres://skladsync:secret-password@127.0.0.1:{port}/db");
    let err = open_pair_state_sync(&config(&url), "p").expect_err("unreachable");
    let text = err.to_string();
    assert!(text.contains("cannot connect to PostgreSQL"), "{text}");
    assert!(!text.contains("secret-password"), "{text}");
}

#[tokio::test]
async fn a_runner_whose_lease_was_taken_over_cannot_commit() {
    let url = database("fencing");
    // Two runners: each its own connections to the one database, one pair.
    let first = SyncState::open_pg(&PgDatabase::connect(&url, 1).expect("db"), "shop").expect("a");
    let second = SyncState::open_pg(&PgDatabase::connect(&url, 1).expect("db"), "shop").expect("b");
    let ttl = Duration::from_secs(30);
    let fa = match first
        .pg()
        .expect("pg")
        .acquire("runner-a", ttl)
        .expect("acquire")
    {
        LeaseAttempt::Taken(f) => f,
        other => panic!("{other:?}"),
    };
    // Held: the second runner does not get it.
    match second
        .pg()
        .expect("pg")
        .acquire("runner-b", ttl)
        .expect("acquire")
    {
        LeaseAttempt::Held {
            holder,
            expires_in_ms,
        } => {
            assert_eq!(holder, "runner-a");
            assert!(expires_in_ms > 20_000, "{expires_in_ms}");
        }
        other => panic!("{other:?}"),
    }
    first.put_link(&link(1, "m1")).expect("the holder commits");

    // The first runner stalls past its lease; the second takes the pair over.
    sql(
        &url,
        "update skladsync_leases set expires_at = now() - interval '1 second'",
    )
    .await;
    let fb = match second
        .pg()
        .expect("pg")
        .acquire("runner-b", ttl)
        .expect("acquire")
    {
        LeaseAttempt::Taken(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(fb.epoch, fa.epoch + 1);

    // The first wakes up: a plan's progress and its link, in one batch, refused whole.
    let seq = first.enqueue(Work::SettingsSaved, 0);
    assert!(matches!(seq, Err(StateError::LeaseLost { .. })), "{seq:?}");
    let err = first
        .link_done(5, 0, &link(2, "m2"), &json!({"id": "m2"}))
        .expect_err("fenced");
    match &err {
        StateError::LeaseLost {
            pair,
            epoch,
            holder,
            now_epoch,
        } => {
            assert_eq!(pair, "shop");
            assert_eq!(*epoch, fa.epoch);
            assert_eq!(holder, "runner-b");
            assert_eq!(*now_epoch, fb.epoch);
        }
        other => panic!("{other:?}"),
    }
    assert!(second
        .linked("order", "crm", &json!(2))
        .expect("read")
        .is_none());
    assert!(second.plan(5).expect("read").is_none());
    assert_eq!(second.inbox_len().expect("len"), 0);
    // Its renewal says so.
    assert!(!first.pg().expect("pg").renew(ttl).expect("renew"));
    // The new holder commits, and sees what the first committed while it held the lease.
    second.put_link(&link(2, "m2")).expect("commit");
    assert_eq!(
        second.linked("order", "crm", &json!(1)).expect("read"),
        Some(link(1, "m1"))
    );
    // A clean stop lets go at once: the first may take it back without waiting.
    second.pg().expect("pg").release().expect("release");
    assert!(matches!(
        first
            .pg()
            .expect("pg")
            .acquire("runner-a", ttl)
            .expect("acquire"),
        LeaseAttempt::Taken(_)
    ));
    assert!(matches!(
        second.put_link(&link(3, "m3")),
        Err(StateError::LeaseLost { .. })
    ));
    first.put_link(&link(3, "m3")).expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_waits_for_its_holder_and_notices_when_it_is_lost() {
    let url = database("lease");
    let first = SyncState::open_pg(&PgDatabase::connect(&url, 1).expect("db"), "p").expect("a");
    let second = SyncState::open_pg(&PgDatabase::connect(&url, 1).expect("db"), "p").expect("b");
    // Renewed every 2 s: a loaded machine may be late by a few seconds without losing it.
    let ttl = Duration::from_secs(6);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let lease = PairLease::take_as(&first, "runner-a", ttl, stop.clone())
        .await
        .expect("take")
        .expect("taken");
    // The second waits while the first renews: still waiting after the first renewed twice.
    let waiting = tokio::spawn({
        let second = second.clone();
        let stop = stop.clone();
        async move { PairLease::take_as(&second, "runner-b", ttl, stop).await }
    });
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let expiry = || async {
        client
            .query_one(
                "select (extract(epoch from expires_at) * 1000)::bigint from skladsync_leases",
                &[],
            )
            .await
            .expect("lease row")
            .get::<_, i64>(0)
    };
    let mut seen = expiry().await;
    let mut renewals = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while renewals < 2 {
        assert!(std::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = expiry().await;
        if now > seen {
            renewals += 1;
            seen = now;
        }
    }
    assert!(!waiting.is_finished(), "taken while renewed");
    first
        .set_cursor("c", &json!(1))
        .expect("the holder commits");
    // Another runner takes the pair over (the holder stalled): the holder notices.
    let mut lost = lease.lost();
    sql(
        &url,
        "update skladsync_leases set holder = 'intruder', epoch = epoch + 1",
    )
    .await;
    tokio::time::timeout(Duration::from_secs(30), lost.wait_for(|l| *l))
        .await
        .expect("noticed within the lease time")
        .expect("lost");
    assert!(matches!(
        first.set_cursor("c", &json!(2)),
        Err(StateError::LeaseLost { .. })
    ));
    // The intruder's lease expires without renewal: the waiting runner gets it.
    let taken = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("taken after the intruder's lease ran out")
        .expect("task")
        .expect("take")
        .expect("lease");
    second.set_cursor("c", &json!(3)).expect("commit");
    assert_eq!(first.cursor("c").expect("read"), Some(json!(3)));
    taken.release();
    drop(lease);
}

#[tokio::test]
async fn a_runner_of_this_machine_that_is_gone_is_taken_over_at_once() {
    let url = database("gone");
    let state = SyncState::open_pg(&PgDatabase::connect(&url, 1).expect("db"), "p").expect("s");
    // A process of this machine that has ended.
    let mut child = std::process::Command::new("true").spawn().expect("true");
    let pid = child.id();
    child.wait().expect("wait");
    let me = skladsync_runner::state::lease::runner_id();
    let host = me.split('/').next().expect("host");
    let dead = format!("{host}/{pid}/deadbeef");
    assert!(skladsync_runner::state::lease::holder_is_gone(&dead));
    assert!(!skladsync_runner::state::lease::holder_is_gone(me));
    // Another machine's runner is never taken for gone.
    assert!(!skladsync_runner::state::lease::holder_is_gone(&format!(
        "elsewhere-{host}/{pid}/deadbeef"
    )));
    sql(
        &url,
        &format!(
            "insert into skladsync_leases values ('p', '{dead}', 7, now() + interval '1 hour')"
        ),
    )
    .await;
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let lease = tokio::time::timeout(
        Duration::from_secs(10),
        PairLease::take(&state, Duration::from_secs(30), stop),
    )
    .await
    .expect("not waited out")
    .expect("take")
    .expect("taken");
    assert_eq!(state.pg().expect("pg").fence().expect("fence").epoch, 8);
    state.set_cursor("c", &json!(1)).expect("commit");
    lease.release();
}

#[tokio::test]
async fn a_connection_the_server_closed_is_opened_again() {
    let url = database("reconnect");
    let db = PgDatabase::connect(&url, 1).expect("db");
    let store = db.store("p");
    store
        .apply(vec![(b"k".to_vec(), Some(b"v".to_vec()))])
        .expect("apply");
    // The server ends every skladsync connection (a restart, an administrator).
    sql(
        &url,
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where application_name = 'skladsync' and datname = current_database() \
         and pid <> pg_backend_pid()",
    )
    .await;
    // A read goes through on a new connection.
    assert_eq!(store.get(b"k").expect("get"), Some(b"v".to_vec()));
    // So do writes after it.
    store
        .apply(vec![(b"k".to_vec(), Some(b"w".to_vec()))])
        .expect("apply");
    assert_eq!(store.get(b"k").expect("get"), Some(b"w".to_vec()));
}
