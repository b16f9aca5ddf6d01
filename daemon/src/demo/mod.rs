//! `skladsync demo`: both emulators in-process on loopback, the sample shop on both sides,
//! the daemon with the default rules for a few cycles (a manager works between them), and a
//! summary of what was synced. No accounts, no network.
//!
//! The cycles:
//!
//! 1. **First sync**: CRM history from the beginning, the МойСклад poll, a full stock pass.
//! 2. **After a manager's work**: in CRM an order is confirmed and a payment arrives; in
//!    МойСклад an uploaded order moves to «Комплектуется» and another one is shipped (a
//!    demand).
//! 3. **A new order** is taken in CRM; stock changes since the last pass go to CRM.

pub mod examples;
pub mod lab;
pub mod pg_cluster;
pub mod shop;
mod summary;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::Config;
use crate::daemon::Daemon;
use lab::{Lab, LabOptions};

pub use summary::Summary;

/// The built-in settings of the demo shop (data beside the rules: `rules/settings.demo.yaml`).
const DEMO_SETTINGS: &str = include_str!("../../../rules/settings.demo.yaml");

/// What can stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The emulators could not start.
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The daemon could not start.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// The config did not load.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A manager action was refused by an emulator.
    #[error("simulated manager action: {0}")]
    Action(String),
}

/// The rules directory: as given, else next to the workspace (a fresh clone run from
/// elsewhere), made absolute.
pub fn rules_dir(given: &Path) -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(given);
    let dir = if given.is_dir() || !beside.is_dir() {
        given.to_path_buf()
    } else {
        beside
    };
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// `a` with `b` merged in (maps key by key, the rest replaced).
fn merge(a: &mut serde_yaml::Value, b: serde_yaml::Value) {
    match (a, b) {
        (serde_yaml::Value::Mapping(am), serde_yaml::Value::Mapping(bm)) => {
            for (k, v) in bm {
                match am.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        am.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Writes the demo shop's settings file: the rules' example settings with the demo shop
/// merged in (`template`, or the built-in demo settings, with the shop's ids filled in).
pub fn write_settings(
    rules: &Path,
    template: Option<&Path>,
    lab: &Lab,
    out: &Path,
) -> Result<(), DemoError> {
    let io = |e: std::io::Error, p: &Path| DemoError::Io(format!("{}: {e}", p.display()));
    let mut base: serde_yaml::Value = ["settings.yaml", "settings.example.yaml"]
        .iter()
        .map(|n| rules.join(n))
        .find(|p| p.is_file())
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| io(e, &p))?;
            serde_yaml::from_str(&text).map_err(|e| DemoError::Io(format!("{}: {e}", p.display())))
        })
        .transpose()?
        .unwrap_or(serde_yaml::Value::Mapping(Default::default()));
    let overlay_text = match template {
        Some(p) => std::fs::read_to_string(p).map_err(|e| io(e, p))?,
        None => DEMO_SETTINGS.to_string(),
    };
    let overlay: serde_yaml::Value =
        serde_yaml::from_str(&shop::render(&overlay_text, &lab.shop.placeholders()))
            .map_err(|e| DemoError::Io(format!("demo settings: {e}")))?;
    merge(&mut base, overlay);
    let text =
        serde_yaml::to_string(&base).map_err(|e| DemoError::Io(format!("demo settings: {e}")))?;
    std::fs::write(out, text).map_err(|e| io(e, out))
}

fn state_ref(lab: &Lab, status: &str) -> Value {
    let id = lab.shop.states.get(status).cloned().unwrap_or_default();
    json!({"meta": {
        "href": format!("{}/entity/customerorder/metadata/states/{id}", lab.ms.base_url()),
        "type": "state", "mediaType": "application/json"}})
}

/// What `skladsync demo` was asked for (the CLI's `DemoArgs`, without clap).
#[derive(Clone, Debug)]
pub struct DemoArgs {
    /// The rules directory (the default rules).
    pub rules: PathBuf,
    /// A settings template for the demo shop merged over the rules' example settings
    /// (`None`: the built-in demo settings).
    pub settings: Option<PathBuf>,
    /// Keep the demo's files (settings, config, state) in this directory.
    pub keep: Option<PathBuf>,
    /// Record every evaluation into this directory.
    pub record: Option<PathBuf>,
    /// Print the runner's log too.
    pub verbose: bool,
}

/// Runs the demo and returns its summary.
pub async fn run(args: &DemoArgs) -> Result<Summary, DemoError> {
    let started = Instant::now();
    let bar = ProgressBar::new(7);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let step = |msg: &str| {
        bar.set_message(msg.to_string());
    };

    step("starting the emulators and seeding the sample shop");
    let lab = Lab::start(LabOptions {
        crm_rate: Some(50),
        ms_limits: true,
        seed: true,
    })
    .await?;
    bar.inc(1);

    let (dir, temporary) = match &args.keep {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "skladsync-demo-{}-{}",
                std::process::id(),
                crate::daemon::now_ms()
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| DemoError::Io(format!("{}: {e}", dir.display())))?;
    let result = run_in(args, &lab, &dir, &bar, started).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    bar.finish_and_clear();
    result
}

async fn run_in(
    args: &DemoArgs,
    lab: &Lab,
    dir: &Path,
    bar: &ProgressBar,
    started: Instant,
) -> Result<Summary, DemoError> {
    let step = |msg: &str| {
        bar.set_message(msg.to_string());
    };
    let rules = rules_dir(&args.rules);
    let settings = dir.join("settings.yaml");
    write_settings(&rules, args.settings.as_deref(), lab, &settings)?;
    let config_path = dir.join("skladsync.yaml");
    let state_dir = dir.join("state");
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut yaml = lab.config_yaml(
        &rules,
        &settings,
        &state_dir,
        "{crm_poll: 1s, reconcile: 1s, stock: 1s, purchase_prices: 1h, retry_min: 200ms, retry_max: 2s}",
        50,
    );
    if let Some(rec) = &args.record {
        let rec = std::path::absolute(rec).unwrap_or_else(|_| rec.clone());
        yaml.push_str(&format!(
            "record:\n  enabled: true\n  dir: {}\n",
            serde_json::to_string(&rec.display().to_string()).unwrap_or_default()
        ));
    }
    // The config holds the emulators' credentials: owner-only from the start.
    crate::config::write_private(&config_path, yaml.as_bytes())
        .map_err(|e| DemoError::Io(format!("{}: {e}", config_path.display())))?;
    let config = Config::load(&config_path)?;
    let daemon = Daemon::new(config).await?;
    daemon.start_up().await?;
    let (stop, rx) = watch::channel(false);
    let receiver = daemon.spawn_receiver(rx);
    let mut summary = Summary::begin(lab, &daemon, &rules);
    bar.inc(1);

    step("cycle 1: first sync (CRM history, МойСклад poll, full stock pass)");
    daemon.cycle().await?;
    daemon.queue_stock_pass(true)?;
    settle(lab, &daemon).await?;
    summary.cycle(lab, &daemon, "first sync");
    bar.inc(1);

    step("a manager works: CRM and МойСклад");
    let actions = manager_work(lab)?;
    bar.inc(1);

    step("cycle 2: CRM history, webhooks, МойСклад poll, stock changes");
    daemon.cycle().await?;
    settle(lab, &daemon).await?;
    daemon.queue_stock_pass(false)?;
    settle(lab, &daemon).await?;
    summary.cycle(
        lab,
        &daemon,
        &format!("after the manager's work: {}", actions.join("; ")),
    );
    bar.inc(1);

    step("cycle 3: a new order in CRM");
    let new_order = new_order(lab)?;
    daemon.cycle().await?;
    settle(lab, &daemon).await?;
    daemon.queue_stock_pass(false)?;
    settle(lab, &daemon).await?;
    summary.cycle(
        lab,
        &daemon,
        &format!("a new order {new_order} taken in CRM"),
    );
    bar.inc(1);

    step("summing up");
    let _ = stop.send(true);
    if let Some(r) = receiver {
        let _ = r.await;
    }
    summary.finish(lab, &daemon, started.elapsed());
    bar.inc(1);
    Ok(summary)
}

/// Lets webhooks arrive, then processes what is due (twice: effects may queue more work).
async fn settle(lab: &Lab, daemon: &Daemon) -> Result<(), DemoError> {
    for _ in 0..2 {
        lab.ms.wait_for_webhooks(Duration::from_secs(5)).await;
        daemon.drain().await?;
    }
    Ok(())
}

fn order_id(lab: &Lab, number: &str) -> Option<i64> {
    lab.crm
        .orders()
        .iter()
        .find(|o| o["number"] == number)
        .and_then(|o| o["id"].as_i64())
}

fn ms_order(lab: &Lab, number: &str) -> Option<Value> {
    lab.ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == number)
}

/// The manager's work between cycles 1 and 2. Returns what was done.
fn manager_work(lab: &Lab) -> Result<Vec<String>, DemoError> {
    let act = |e: String| DemoError::Action(e);
    let mut done = Vec::new();
    let manager = lab.crm.as_manager(12);
    if let Some(id) = order_id(lab, "A-1001") {
        manager
            .set_order_status(id, "client-confirmed")
            .map_err(|e| act(e.to_string()))?;
        manager
            .add_payment(
                id,
                json!({"type": "cash", "status": "paid", "amount": 10280}),
            )
            .map_err(|e| act(e.to_string()))?;
        done.push("A-1001 confirmed and paid in CRM".to_string());
    }
    if let Some(o) = ms_order(lab, "A-1002") {
        if let Some(id) = o["id"].as_str() {
            lab.ms
                .update(
                    "customerorder",
                    id,
                    json!({"state": state_ref(lab, "send-to-delivery")}),
                )
                .map_err(|e| act(e.to_string()))?;
            let positions: Vec<Value> = o["positions"]["rows"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|p| json!({"quantity": p["quantity"], "price": p["price"], "assortment": p["assortment"]}))
                        .collect()
                })
                .unwrap_or_default();
            lab.ms
                .create(
                    "demand",
                    json!({
                        "name": "A-1002-S", "organization": o["organization"], "agent": o["agent"],
                        "store": o["store"], "customerOrder": {"meta": o["meta"]},
                        "applicable": true, "positions": positions,
                    }),
                )
                .map_err(|e| act(e.to_string()))?;
            done.push("A-1002 handed to delivery and shipped in МойСклад".to_string());
        }
    }
    Ok(done)
}

/// A new CRM order for cycle 3; returns its number.
fn new_order(lab: &Lab) -> Result<String, DemoError> {
    lab.crm
        .as_manager(12)
        .create_order(json!({
            "number": "A-1005", "externalId": "A-1005", "site": "shop-main", "status": "new",
            "customer": {"externalId": "cp-8812"}, "firstName": "Иван", "lastName": "Петров",
            "phone": "+79001234567", "shipmentStore": "main",
            "items": [{"offer": {"xmlId": "chair01#blue"}, "quantity": 2},
                      {"offer": {"xmlId": "lamp-arc"}, "quantity": 1}],
            "delivery": {"code": "pickup", "cost": 0}
        }))
        .map_err(|e| DemoError::Action(e.to_string()))?;
    Ok("A-1005".to_string())
}
