//! `skladsync emulate`: both emulators standalone on loopback.

use std::process::ExitCode;

use crate::cli::EmulateArgs;
use crate::demo::examples::examples;
use crate::demo::lab::{
    Lab, LabOptions, CRM_KEY, CRM_MANAGER_KEY, MS_LOGIN, MS_MANAGER_LOGIN, MS_MANAGER_PASSWORD,
    MS_PASSWORD,
};

/// Runs the emulators until Ctrl-C / SIGTERM, printing where they are.
pub fn run(args: &EmulateArgs) -> ExitCode {
    super::run::init_logging("warn");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let lab = match Lab::start(LabOptions {
            seed: !args.empty,
            crm_rate: Some(10),
            ms_limits: true,
        })
        .await
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        println!("retailCRM emulator: {}", lab.crm.base_url());
        println!("  API key (X-API-KEY): {CRM_KEY}  (the runner's own)");
        println!("  a manager's API key: {CRM_MANAGER_KEY}  (changes the runner syncs)");
        println!("МойСклад emulator:  {}", lab.ms.base_url());
        println!("  login / password:   {MS_LOGIN} / {MS_PASSWORD}  (the runner's)");
        println!("  a manager:          {MS_MANAGER_LOGIN} / {MS_MANAGER_PASSWORD}");
        if !args.empty {
            println!("\nSample shop, МойСклад ids for the settings:");
            for (k, v) in lab.shop.placeholders() {
                println!("  {k:<28} {v}");
            }
        }
        if let Some(path) = &args.write_config {
            let dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
            let yaml = lab.config_yaml(
                &args.rules,
                &args.rules.join("settings.yaml"),
                &dir.join("skladsync-state"),
                "{crm_poll: 10s, reconcile: 30s, stock: 1m, purchase_prices: 5m}",
                10,
            );
            // It holds the emulators' credentials: owner-only from the start.
            match crate::config::write_private(path, yaml.as_bytes()) {
                Ok(()) => println!("\nRunner config written to {}", path.display()),
                Err(e) => eprintln!("error: cannot write {}: {e}", path.display()),
            }
        }
        if !args.empty {
            println!(
                "\nTry it: with `skladsync run --config FILE` running, send these and watch the runner react."
            );
            for ex in examples(&lab) {
                println!("\n# {}\n{}", ex.title, ex.curl());
            }
        }
        println!("\nCtrl-C stops the emulators (their state is lost).");
        super::run::shutdown_signal().await;
        ExitCode::SUCCESS
    })
}
