//! МойСклад webhook registrations are owned per runner (issue 9, item 7), against the
//! МойСклад emulator: a second runner with another state does not take them over (it refuses
//! to start unless `receiver.take_over`), registrations made with an earlier secret are
//! removed, the secret is URL-safe, and a loopback receiver is not registered with a МойСклад
//! that cannot reach it.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use serde_json::json;
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::{Daemon, DaemonError};
use skladsync_runner::demo::lab::{Lab, LabOptions, MS_LOGIN, MS_PASSWORD};
use skladsync_runner::demo::shop::render;

async fn lab() -> Lab {
    Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab")
}

/// The config text of a runner on `lab` with its state in `dir/<state>`; `webhooks` and
/// `extra` are appended to the `webhooks:` section and to the file.
fn config_text(lab: &Lab, dir: &Path, state: &str, webhooks: &str, extra: &str) -> String {
    let settings = dir.join("settings.yaml");
    std::fs::write(
        &settings,
        render(support::SETTINGS, &lab.shop.placeholders()),
    )
    .expect("settings");
    lab.config_yaml(
        &support::fixture_rules(),
        &settings,
        &dir.join(state),
        support::INTERVALS,
        100,
    ) + webhooks
        + extra
}

async fn runner(lab: &Lab, dir: &Path, state: &str, webhooks: &str, extra: &str) -> Daemon {
    let text = config_text(lab, dir, state, webhooks, extra);
    let cfg = Config::from_yaml(&text, dir, &|_| None).expect("config");
    Daemon::new(cfg).await.expect("daemon")
}

/// The URLs of the webhooks registered on the emulator, sorted.
fn hook_urls(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = lab
        .ms
        .list("webhook")
        .iter()
        .filter_map(|h| h["url"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_does_not_silently_take_the_registrations_over() {
    let lab = lab().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = "  secret: one-shared-secret\n";
    let first = runner(&lab, dir.path(), "state-1", shared, "").await;
    first.start_up().await.expect("the first runner starts");
    let registered = hook_urls(&lab);
    assert!(registered.len() >= 2, "{registered:?}");
    let first_instance = first
        .state()
        .misc("instance_id")
        .expect("state")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("an instance id was made");
    assert!(registered.iter().all(|u| u.ends_with(&format!(
        "/moysklad/webhook/one-shared-secret/{first_instance}"
    ))));

    // Another state, the same account and secret: it refuses, and names the way out.
    let second = runner(&lab, dir.path(), "state-2", shared, "").await;
    let err = second
        .start_up()
        .await
        .expect_err("a second runner must not take the registrations");
    assert!(matches!(err, DaemonError::Webhooks(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("another skladsync runner"), "{text}");
    assert!(text.contains(&first_instance), "{text}");
    assert!(text.contains("receiver.take_over"), "{text}");
    assert_eq!(hook_urls(&lab), registered, "nothing was re-pointed");

    // Told to take over, it does: every registration points at it, none is left behind.
    drop(second);
    let third = runner(
        &lab,
        dir.path(),
        "state-2",
        shared,
        "receiver:\n  take_over: true\n",
    )
    .await;
    third.start_up().await.expect("taking over");
    let now = hook_urls(&lab);
    assert_eq!(now.len(), registered.len());
    assert!(now.iter().all(|u| !u.contains(&first_instance)), "{now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_of_an_earlier_secret_are_removed() {
    let lab = lab().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let old = runner(&lab, dir.path(), "state", "  secret: the-old-secret\n", "").await;
    old.start_up().await.expect("start");
    let before = hook_urls(&lab);
    assert!(!before.is_empty());
    drop(old);

    // Made by an earlier version of this runner (no instance id in the path).
    let ms = MoyskladClient::new(
        ClientConfig::new(Auth::basic(MS_LOGIN, MS_PASSWORD)).base_url(lab.ms.base_url()),
    )
    .expect("client");
    ms.create_webhook(
        "http://127.0.0.1:9/moysklad/webhook/the-old-secret",
        "counterparty",
        "CREATE",
        false,
    )
    .await
    .expect("a legacy registration");
    // Not skladsync's at all: left alone.
    ms.create_webhook("http://127.0.0.1:9/other/hook", "product", "CREATE", false)
        .await
        .expect("a foreign registration");

    let new = runner(&lab, dir.path(), "state", "  secret: the-new-secret\n", "").await;
    new.start_up().await.expect("restart with a new secret");
    let after = hook_urls(&lab);
    assert!(
        after.iter().all(|u| !u.contains("the-old-secret")),
        "old registrations removed: {after:?}"
    );
    let ours: Vec<&String> = after
        .iter()
        .filter(|u| u.contains("/moysklad/webhook/the-new-secret/"))
        .collect();
    assert_eq!(ours.len(), before.len(), "{after:?}");
    assert!(
        after.iter().any(|u| u.ends_with("/other/hook")),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_url_safe() {
    let lab = lab().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in ["a/b?c", "with space", "100%", "..", "#x"] {
        let text = config_text(
            &lab,
            dir.path(),
            "state",
            &format!("  secret: {}\n", json!(bad)),
            "",
        );
        let err = Config::from_yaml(&text, dir.path(), &|_| None).expect_err(bad);
        assert!(
            err.contains("webhooks.secret") && err.contains("URL-safe"),
            "{err}"
        );
        // The same from the environment.
        let text = config_text(&lab, dir.path(), "state", "", "");
        let env = |k: &str| (k == "SKLADSYNC_WEBHOOK_SECRET").then(|| bad.to_string());
        let err = Config::from_yaml(&text, dir.path(), &env).expect_err(bad);
        assert!(err.contains("SKLADSYNC_WEBHOOK_SECRET"), "{err}");
    }
    // A generated secret is URL-safe, and a webhook on its path is routed.
    let d = runner(&lab, dir.path(), "state", "  register: false\n", "").await;
    let secret = d
        .state()
        .misc("webhook_secret")
        .expect("state")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("made");
    assert!(skladsync_runner::config::check_webhook_secret(&secret).is_ok());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let receiver = d.spawn_receiver(rx);
    let instance = d
        .state()
        .misc("instance_id")
        .expect("state")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("made");
    let addr = d.receiver_addr().expect("receiver");
    let client = reqwest::Client::new();
    let body = json!({"events": []});
    let r = client
        .post(format!(
            "http://{addr}/moysklad/webhook/{secret}/{instance}?requestId=r1"
        ))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    // Another instance's path is not ours.
    let r = client
        .post(format!(
            "http://{addr}/moysklad/webhook/{secret}/someone-else?requestId=r2"
        ))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 404);
    let _ = stop.send(true);
    if let Some(r) = receiver {
        let _ = r.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_receiver_is_not_registered_with_a_remote_moysklad() {
    let lab = lab().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = "https://api.moysklad.ru/api/remap/1.2";
    for public in ["", "  public_url: http://localhost:8088\n"] {
        let text =
            config_text(&lab, dir.path(), "state", public, "").replace(lab.ms.base_url(), remote);
        let cfg = Config::from_yaml(&text, dir.path(), &|_| None).expect("config");
        let d = Daemon::new(cfg).await.expect("daemon");
        // Refused before any request is sent.
        let err = d.start_up().await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("loopback"), "{text}");
        assert!(text.contains("webhooks.public_url"), "{text}");
        assert!(text.contains("webhooks.register: false"), "{text}");
    }
    // A loopback receiver with a local МойСклад (the emulator) is fine.
    let d = runner(&lab, dir.path(), "state-local", "", "").await;
    d.start_up().await.expect("local МойСклад");
    assert!(!hook_urls(&lab).is_empty());
}
