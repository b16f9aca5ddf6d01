//! The operator commands against real state: `skladsync journal`, `status`, `completions`
//! and `man` on the state `skladsync demo --keep` leaves; `journal --follow` on a running
//! daemon (over its `/status`); `relink` on a lab whose link store lost links.

#[path = "fixtures/e2e/support.rs"]
mod support;

mod cli_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use skladsync_runner::state::{JournalEntry, Link, SyncState};

use cli_support::{root, skladsync};

/// Runs the demo once, keeping its files in a temporary directory.
fn demo_state() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = dir.path().join("demo");
    let keep_s = keep.display().to_string();
    let (code, out, err) = skladsync(&["demo", "--keep", &keep_s], &root());
    assert_eq!(code, 0, "demo failed:\n{out}\n{err}");
    assert!(keep.join("state/db").is_file(), "the demo kept its state");
    dir
}

#[test]
fn journal_status_completions_and_man_work_on_the_demos_state() {
    let dir = demo_state();
    let cfg = dir.path().join("demo/skladsync.yaml");
    let cfg_s = cfg.display().to_string();
    let cwd = dir.path();

    // journal: everything, oldest first, one entry per block.
    let (code, all, err) = skladsync(&["journal", "--config", &cfg_s], cwd);
    assert_eq!(code, 0, "{err}");
    for c in ["RULES_LOADED", "STORE_NOT_MAPPED", "ITEM_IS_SERVICE"] {
        assert!(all.contains(c), "{c} in\n{all}");
    }
    // --json: one object per line, every one a journal entry.
    let (code, json_out, err) = skladsync(&["journal", "--config", &cfg_s, "--json"], cwd);
    assert_eq!(code, 0, "{err}");
    let entries: Vec<Value> = json_out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(entries.len() >= 3, "{json_out}");
    let times: Vec<i64> = entries
        .iter()
        .map(|e| e["time"].as_i64().expect("time"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );
    // Filters.
    let (_, errors, _) = skladsync(
        &["journal", "--config", &cfg_s, "--json", "--level", "error"],
        cwd,
    );
    assert!(!errors.is_empty());
    for l in errors.lines() {
        let e: Value = serde_json::from_str(l).expect("JSON");
        assert_eq!(e["level"], "error", "{l}");
    }
    assert!(
        errors.lines().count() < entries.len(),
        "the level filter drops some"
    );
    let (_, by_code, _) = skladsync(
        &[
            "journal",
            "--config",
            &cfg_s,
            "--json",
            "--code",
            "store_not_mapped",
        ],
        cwd,
    );
    assert!(!by_code.is_empty());
    assert!(by_code
        .lines()
        .all(|l| l.contains("\"code\":\"STORE_NOT_MAPPED\"")));
    let (_, by_subject, _) = skladsync(
        &[
            "journal",
            "--config",
            &cfg_s,
            "--json",
            "--subject",
            "A-1003",
        ],
        cwd,
    );
    assert!(!by_subject.is_empty());
    assert!(
        by_subject.lines().all(|l| l.contains("A-1003")),
        "{by_subject}"
    );

    // status: text and JSON.
    let (code, text, err) = skladsync(&["status", "--config", &cfg_s], cwd);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("Rules version: "), "{text}");
    assert!(text.contains("crm.history.orders = "), "{text}");
    assert!(text.contains("order: "), "links by kind:\n{text}");
    let (code, j, _) = skladsync(&["status", "--config", &cfg_s, "--json"], cwd);
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(&j).expect("status JSON");
    assert_eq!(s["source"], "state");
    assert_eq!(s["rules_version"].as_str().map(str::len), Some(16));
    assert!(s["rules_since"].as_i64().is_some());
    assert!(s["cursors"]["crm.history.orders"].is_number(), "{s}");
    assert!(s["links_by_kind"]["order"].as_u64() >= Some(1), "{s}");
    // The state directory can be named directly, without a config.
    let state_s = dir.path().join("demo/state").display().to_string();
    let (code, _, err) = skladsync(&["status", "--state", &state_s, "--json"], cwd);
    assert_eq!(code, 0, "{err}");

    // completions and man.
    let (code, bash, _) = skladsync(&["completions", "bash"], cwd);
    assert_eq!(code, 0);
    assert!(bash.contains("_skladsync()"), "a bash completion function");
    assert!(bash.contains("relink") && bash.contains("--dry-run"));
    let (code, zsh, _) = skladsync(&["completions", "zsh"], cwd);
    assert_eq!(code, 0);
    assert!(zsh.starts_with("#compdef skladsync"));
    let (code, man, _) = skladsync(&["man"], cwd);
    assert_eq!(code, 0);
    assert!(
        man.contains(".TH skladsync 1"),
        "{}",
        &man[..man.len().min(300)]
    );
    assert!(man.contains("journal"));
    let mandir = dir.path().join("man");
    let (code, _, err) = skladsync(&["man", "--out", &mandir.display().to_string()], cwd);
    assert_eq!(code, 0, "{err}");
    assert!(mandir.join("skladsync.1").is_file());
    assert!(mandir.join("skladsync-journal.1").is_file());
    assert!(mandir.join("skladsync-relink.1").is_file());
}

#[test]
fn a_missing_state_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing").display().to_string();
    let (code, _, err) = skladsync(&["journal", "--state", &missing], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("holds no state"), "{err}");
    // No config in the working directory, no --state: says what to give.
    let (code, _, err) = skladsync(&["status"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("skladsync.yaml"), "{err}");
}

fn entry(code: &str, text: &str) -> JournalEntry {
    let now = support::now();
    JournalEntry {
        time: now,
        first: now,
        count: 1,
        direction: "runner".into(),
        rule: "test".into(),
        code: code.into(),
        level: "warning".into(),
        text: text.into(),
        subject: json!({"number": "F-1"}),
        raw: Value::Null,
    }
}

/// While the daemon holds the state, `journal` reads it from the daemon; `--follow` prints
/// new entries as they are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_follows_a_running_daemon_over_http() {
    let rig = support::start(support::fixture_rules(), true).await;
    let d = &rig.daemon;
    let addr = d.receiver_addr().expect("receiver");
    let secret = d
        .state()
        .misc("webhook_secret")
        .expect("misc")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("secret");
    let cfg = rig.dir.path().join("skladsync.yaml");
    // The state is held by the daemon: without an address the command says so.
    let (code, _, err) = skladsync(
        &["journal", "--config", &cfg.display().to_string()],
        rig.dir.path(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("in use by a running daemon"), "{err}");
    assert!(!err.contains(&secret));

    // With the address the daemon writes beside its state when it runs (here by hand: the
    // rig does not run `Daemon::run`).
    let status_url = format!("http://{addr}/status/{secret}");
    std::fs::write(
        skladsync_runner::daemon::status_file(&rig.dir.path().join("state")),
        json!({"status_url": status_url}).to_string(),
    )
    .expect("status file");
    d.state()
        .journal(entry("FOLLOW_ONE", "first"), d.journal_limits())
        .expect("journal");
    let out_file = rig.dir.path().join("follow.out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args([
            "journal",
            "--follow",
            "--json",
            "--interval",
            "0.2",
            "--config",
        ])
        .arg(&cfg)
        .args(["--code", "FOLLOW_ONE", "--code", "FOLLOW_TWO"])
        .stdout(std::fs::File::create(&out_file).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("journal --follow");
    let read = || std::fs::read_to_string(&out_file).unwrap_or_default();
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !read().contains(what) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        read().contains(what)
    };
    let first = wait_for("FOLLOW_ONE");
    d.state()
        .journal(entry("FOLLOW_TWO", "second"), d.journal_limits())
        .expect("journal");
    let second = wait_for("FOLLOW_TWO");
    let _ = child.kill();
    let _ = child.wait();
    let out = read();
    assert!(first && second, "{out}");
    // Each entry once, filtered by code.
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().all(|l| l.contains("FOLLOW_")));
    rig.stop().await;
}

/// A lab synced with the default rules, then its link store damaged: `relink --dry-run`
/// prints what it would do and writes nothing; `relink` restores the links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relink_rebuilds_lost_and_wrong_links_from_both_systems() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(&root().join("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let config = dir.path().join("skladsync.yaml");
    let state_dir = dir.path().join("state");
    std::fs::write(
        &config,
        lab.config_yaml(&rules, &settings, &state_dir, support::INTERVALS, 100),
    )
    .expect("config");
    {
        let daemon = Daemon::new(Config::load(&config).expect("config"))
            .await
            .expect("daemon");
        daemon.start_up().await.expect("start up");
        for _ in 0..3 {
            daemon.cycle().await.expect("cycle");
        }
    }
    let kinds = ["order", "customer", "customer_corporate"];
    let keyed = |links: Vec<Link>| -> Vec<Link> {
        let mut v: Vec<Link> = links
            .into_iter()
            .filter(|l| kinds.contains(&l.kind.as_str()))
            .collect();
        v.sort_by_key(|l| serde_json::to_string(l).unwrap_or_default());
        v
    };
    let state = SyncState::open(&state_dir).expect("state");
    let before = state.links().expect("links");
    let good = keyed(before.clone());
    assert!(
        good.iter().filter(|l| l.kind == "order").count() >= 2,
        "{good:?}"
    );
    assert!(good.iter().any(|l| l.kind == "customer"), "{good:?}");
    let others: Vec<Link> = before
        .iter()
        .filter(|l| !kinds.contains(&l.kind.as_str()))
        .cloned()
        .collect();
    // Damage: two links lost, one pointing at the wrong order, one to orders that are gone.
    let orders: Vec<&Link> = good.iter().filter(|l| l.kind == "order").collect();
    state.remove_link(orders[0]).expect("remove");
    let customer = good
        .iter()
        .find(|l| l.kind == "customer")
        .expect("customer");
    state.remove_link(customer).expect("remove");
    let mut wrong = orders[1].clone();
    let right_ms = wrong.ids["moysklad"].clone();
    wrong.ids.insert(
        "moysklad".into(),
        json!("00000000-0000-0000-0000-00000000dead"),
    );
    state.put_link(&wrong).expect("put");
    let gone = Link {
        kind: "order".into(),
        ids: [
            ("crm".to_string(), json!(987654)),
            (
                "moysklad".to_string(),
                json!("00000000-0000-0000-0000-0000000000aa"),
            ),
        ]
        .into_iter()
        .collect(),
    };
    state.put_link(&gone).expect("put");
    let damaged = state.links().expect("links");
    drop(state);

    let cfg_s = config.display().to_string();
    let (code, out, err) = skladsync(&["relink", "--dry-run", "--config", &cfg_s], dir.path());
    assert_eq!(code, 0, "{out}\n{err}");
    let crm = |l: &Link| l.ids["crm"].to_string();
    assert!(
        out.contains(&format!("+ order crm={} ", crm(orders[0]))),
        "{out}"
    );
    assert!(
        out.contains(&format!("+ customer crm={} ", crm(customer))),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "~ order crm={} moysklad=00000000-0000-0000-0000-00000000dead → {}",
            crm(&wrong),
            right_ms.as_str().unwrap_or_default()
        )),
        "{out}"
    );
    assert!(out.contains("- order crm=987654 "), "{out}");
    assert!(
        out.contains("2 to add, 1 to change, 1 to remove (dry run"),
        "{out}"
    );
    let state = SyncState::open(&state_dir).expect("state");
    assert_eq!(
        keyed(state.links().expect("links")),
        keyed(damaged),
        "a dry run writes nothing"
    );
    drop(state);

    let (code, out, err) = skladsync(&["relink", "--config", &cfg_s], dir.path());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("written"), "{out}");
    let state = SyncState::open(&state_dir).expect("state");
    let after = state.links().expect("links");
    assert_eq!(
        keyed(after.clone()),
        good,
        "the links are as the rules wrote them"
    );
    for l in &others {
        assert!(after.contains(l), "other kinds untouched: {l:?}");
    }
    drop(state);
    // Nothing left to do.
    let (code, out, _) = skladsync(&["relink", "--dry-run", "--config", &cfg_s], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("0 to add, 0 to change, 0 to remove"), "{out}");
}
