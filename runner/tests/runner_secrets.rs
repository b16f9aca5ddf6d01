//! Credentials never reach the logs: the `skladsync run` binary is run with every log on
//! (`RUST_LOG=trace`), credentials from the environment and the config file, both emulators
//! failing now and then, webhooks arriving on the secret path, and once with a wrong
//! password; none of the secrets (nor the Basic auth header made of them) appears in what it
//! wrote.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use skladsync_emulators::faults::{Fault, FaultPlan, Trigger};
use skladsync_emulators::moysklad::{EmulatorUser, MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_emulators::retailcrm::{EmulatorConfig, RetailcrmEmulator};
use skladsync_runner::demo::shop::{render, seed_crm, seed_ms};

const CRM_KEY: &str = "crmKEY-d41d8cd98f00b204e980";
const MS_LOGIN: &str = "robot@acme-secret-login";
const MS_PASSWORD: &str = "msPASS-9e107d9d372bb6826bd8";
const WRONG_PASSWORD: &str = "msWRONG-e4d909c290d0fb1ca068";
const HOOK_SECRET: &str = "hookSECRET-3f786850e387550fdab8";

/// Runs the binary for a while and returns what it logged.
/// Runs the binary until `ready` holds (polled; at most 60 s), then `while_running`, then a
/// little longer, and returns its log.
async fn run_binary(
    config: &Path,
    password: &str,
    ready: impl Fn() -> bool,
    while_running: impl FnOnce(),
) -> String {
    let child = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "trace,sled=debug")
        .env("SKLADSYNC_CRM_API_KEY", CRM_KEY)
        .env("SKLADSYNC_MS_PASSWORD", password)
        .env("SKLADSYNC_WEBHOOK_SECRET", HOOK_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start skladsync run");
    // Drain both pipes while it runs: at trace level it writes far more than a pipe holds,
    // and a full pipe would block its every log call (and with them the whole daemon).
    let mut child = child;
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_reader = drain(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
    );
    let err_reader = drain(
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Start-up takes as long as the 2026 request budget makes it (4 units a request).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while_running();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    )
}

fn leaks(log: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut secrets = vec![
        CRM_KEY.to_string(),
        MS_PASSWORD.to_string(),
        WRONG_PASSWORD.to_string(),
        HOOK_SECRET.to_string(),
        MS_LOGIN.to_string(),
        b64.encode(format!("{MS_LOGIN}:{MS_PASSWORD}")),
        b64.encode(format!("{MS_LOGIN}:{WRONG_PASSWORD}")),
    ];
    // Fragments too: a secret cut by a line or a quote would still be a leak.
    secrets.extend(
        [CRM_KEY, MS_PASSWORD, HOOK_SECRET]
            .iter()
            .map(|s| s[s.len() - 12..].to_string()),
    );
    secrets.into_iter().filter(|s| log.contains(s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_appear_in_the_logs() {
    let crm = RetailcrmEmulator::start(EmulatorConfig::with_keys([CRM_KEY]).rate_limit(None))
        .await
        .expect("retailCRM emulator");
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        users: vec![EmulatorUser::new(MS_LOGIN, MS_PASSWORD)],
        rate_limit: None,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("МойСклад emulator");
    seed_crm(&crm).expect("seed CRM");
    let shop = seed_ms(&ms).expect("seed МойСклад");
    for (i, faults) in [crm.faults(), ms.faults()].into_iter().enumerate() {
        faults.add(
            FaultPlan::new(Fault::ServerError { status: 503 }).trigger(Trigger::Random {
                probability: 0.1,
                seed: 3 + i as u64,
            }),
        );
        faults.add(
            FaultPlan::new(Fault::DropConnection).trigger(Trigger::Random {
                probability: 0.05,
                seed: 9 + i as u64,
            }),
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let settings = dir.path().join("settings.yaml");
    std::fs::write(&settings, render(support::SETTINGS, &shop.placeholders())).expect("settings");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(
        &config,
        format!(
            "crm: {{url: '{}', history_start: beginning}}\n\
             moysklad: {{url: '{}', login: '{MS_LOGIN}'}}\n\
             rules: {{dir: '{}', settings: '{}'}}\n\
             state: {{path: '{}'}}\n\
             intervals: {}\n\
             webhooks: {{listen: '127.0.0.1:0'}}\n",
            crm.base_url(),
            ms.base_url(),
            support::fixture_rules().display(),
            settings.display(),
            dir.path().join("state").display(),
            support::INTERVALS,
        ),
    )
    .expect("config");
    // The config file itself holds no key or password.
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(!text.contains(CRM_KEY) && !text.contains(MS_PASSWORD));

    // A normal run: uploads, a state change in МойСклад comes back by webhook.
    let log = run_binary(&config, MS_PASSWORD, || !ms.list("customerorder").is_empty(), || {
        if let Some(o) = ms.list("customerorder").first() {
            if let Some(id) = o["id"].as_str() {
                let state = &shop.states["assembling"];
                let _ = ms.update(
                    "customerorder",
                    id,
                    json!({"state": {"meta": {
                        "href": format!("{}/entity/customerorder/metadata/states/{state}", ms.base_url()),
                        "type": "state", "mediaType": "application/json"}}}),
                );
            }
        }
    })
    .await;
    ms.wait_for_webhooks(Duration::from_secs(10)).await;
    assert!(log.contains("skladsync is running"), "{log}");
    assert!(log.contains("evaluated"), "the runner did some work");
    assert!(log.contains("TRACE"), "every log level was on");
    assert!(
        ms.webhook_deliveries().iter().any(|d| d.delivered),
        "a webhook reached the secret path"
    );
    assert!(!ms.list("customerorder").is_empty(), "orders were uploaded");
    let found = leaks(&log);
    assert!(found.is_empty(), "secrets in the log: {found:?}");

    // A run with a wrong password: every МойСклад call is refused and logged.
    let log = run_binary(&config, WRONG_PASSWORD, || true, || {}).await;
    assert!(log.contains("401"), "the refusals are logged");
    let found = leaks(&log);
    assert!(found.is_empty(), "secrets in the log: {found:?}");
}
