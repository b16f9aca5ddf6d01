//! `skladsync plan`: evaluate one event and print the plan.

use std::process::ExitCode;

use skladsync_engine::{EvalOptions, RecordedWorld, RuleTimes};

use crate::cli::{Format, PlanArgs};
use crate::tooling::corpus;

/// Exit 0 with the plan on stdout; 1 when the rules or the inputs are bad.
pub fn run(args: &PlanArgs) -> ExitCode {
    if args.live {
        return live(args);
    }
    let Some(event_path) = args.event.as_ref() else {
        eprintln!("error: give --event FILE (or --live --order N)");
        return ExitCode::from(1);
    };
    let color = super::use_color(args.rules.color);
    let rules = match super::load_rules(&args.rules) {
        Ok((rules, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{}", warnings.render(color));
            }
            rules
        }
        Err(diags) => {
            eprint!("{}", diags.render(color));
            return ExitCode::from(1);
        }
    };
    // An event file, or a case file (its world and settings overrides are used too).
    let case = match super::read_value(event_path).and_then(|doc| {
        corpus::item_from_value(event_path.display().to_string(), &doc)
            .map(|i| i.case)
            .map_err(|e| format!("{}: {e}", event_path.display()))
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = rules.check_event(&case.event.name) {
        eprintln!("error: {}: {e}", event_path.display());
        return ExitCode::from(1);
    }
    let event = case.event;
    let settings = rules.settings_with(&case.settings);
    let world = match &args.world {
        None => case.world,
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| RecordedWorld::from_yaml(&t))
        {
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: world {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
    };
    let opts = EvalOptions {
        settings: Some(&settings),
        ..EvalOptions::default()
    };
    match rules.evaluate_with(&event, &world, opts) {
        Ok(plan) => {
            match args.format {
                Format::Yaml => print!("{}", plan.to_yaml()),
                Format::Json => println!("{}", plan.to_json()),
            }
            if let Some(runs) = args.timings {
                let mut times = RuleTimes::default();
                for _ in 0..runs.max(1) {
                    let opts = EvalOptions {
                        settings: Some(&settings),
                        rule_times: Some(&mut times),
                        ..EvalOptions::default()
                    };
                    if let Err(e) = rules.evaluate_with(&event, &world, opts) {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                }
                eprint!("{}", timings_table(&times));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `plan --timings`: one line a rule, dearest first: its steps and its time per evaluation.
fn timings_table(times: &RuleTimes) -> String {
    let runs = times.evaluations.max(1);
    let rules = times.by_time();
    let width = rules.iter().map(|r| r.rule.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:>9}  {:>10}   ({runs} evaluations)\n",
        "rule", "steps", "µs"
    );
    let total: std::time::Duration = rules.iter().map(|r| r.time).sum();
    for r in &rules {
        out.push_str(&format!(
            "{:<width$}  {:>9}  {:>10.1}\n",
            r.rule,
            r.steps / runs,
            r.time.as_secs_f64() * 1e6 / runs as f64
        ));
    }
    out.push_str(&format!(
        "{:<width$}  {:>9}  {:>10.1}\n",
        "all",
        rules.iter().map(|r| r.steps).sum::<u64>() / runs,
        total.as_secs_f64() * 1e6 / runs as f64
    ));
    out
}

/// `plan --live --order N`: through the running daemon (`GET /admin/plan`), or with a daemon
/// of this process that opens no listener and applies nothing.
fn live(args: &PlanArgs) -> ExitCode {
    let Some(order) = args.order else {
        eprintln!("error: --live needs --order N");
        return ExitCode::from(1);
    };
    let config = match crate::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let answer = rt.block_on(async {
        // A daemon that was killed leaves its address behind: then it is done here.
        let through_daemon = match running_daemon(&config.state.path) {
            Some((base, token)) => Some(from_daemon(&base, &token, order).await),
            None => None,
        };
        match through_daemon {
            Some(Ok(v)) => Ok(v),
            Some(Err(daemon_err)) => here(&config, order)
                .await
                .map_err(|e| format!("{daemon_err}; and here: {e}")),
            None => here(&config, order).await,
        }
    });
    let v = match answer {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
        eprintln!("error: CRM order {order}: {e}");
        return ExitCode::from(1);
    }
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&v["plan"]).unwrap_or_default() + "\n",
        Format::Yaml => match serde_json::from_value::<skladsync_engine::Plan>(v["plan"].clone()) {
            Ok(plan) => plan.to_yaml(),
            Err(e) => {
                eprintln!("error: the daemon's answer is not a plan: {e}");
                return ExitCode::from(2);
            }
        },
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// The dry run in this process: a daemon that opens no listener, records nothing and is never
/// run (the state must be free: no daemon running on it).
async fn here(config: &crate::config::Config, order: i64) -> Result<serde_json::Value, String> {
    let mut quiet = config.clone();
    quiet.webhooks.enabled = false;
    quiet.http.enabled = false;
    quiet.record.enabled = false;
    let daemon = crate::daemon::Daemon::new(quiet)
        .await
        .map_err(|e| e.to_string())?;
    let run = daemon
        .dry_run_order(order)
        .await
        .map_err(|e| e.to_string())?;
    Ok(run.to_json())
}

/// The running daemon's operator address and token, from the file it writes beside the state
/// (`status_url` is `…/status/<token>`).
fn running_daemon(state: &std::path::Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(crate::daemon::status_file(state)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = v.get("status_url")?.as_str()?;
    let i = url.rfind("/status/")?;
    Some((
        url[..i].to_string(),
        url[i + "/status/".len()..].to_string(),
    ))
}

async fn from_daemon(base: &str, token: &str, order: i64) -> Result<serde_json::Value, String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(format!("{base}/admin/plan"))
        .query(&[("order", order)])
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("the running daemon ({base}): {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!(
            "the running daemon ({base}) answered {}",
            resp.status()
        ));
    }
    resp.json()
        .await
        .map_err(|e| format!("the running daemon ({base}): {}", e.without_url()))
}
