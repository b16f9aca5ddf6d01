//! `skladsync run --config FILE`: the daemon.

use std::process::ExitCode;

use crate::cli::{LogFormat, RunArgs};
use crate::config::Config;
use crate::daemon::Daemon;

/// Logs to stderr through `tracing`; `RUST_LOG` chooses what (default `default`).
pub(super) fn init_logging(default: &str) {
    init_logging_as(default, LogFormat::Text);
}

/// Like [`init_logging`], in `format`: text for people, or one JSON object per line (for a
/// log collector: `timestamp`, `level`, `fields.message`, the event's fields, `target`).
pub(super) fn init_logging_as(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Completes on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the daemon until SIGTERM / Ctrl-C. Exit 0 after a clean stop, 1 on a start-up error.
pub fn run(args: &RunArgs) -> ExitCode {
    init_logging_as("info", args.log_format);
    // --- tenants (issue 15, item 1): a config with `pairs:` runs a fleet ---
    // (A file that cannot be read: `Config::load` below says what is wrong.)
    if let Ok(true) = crate::fleet::declares_pairs(&args.config) {
        return run_fleet(args);
    }
    let config = match Config::load(&args.config) {
        Ok(mut c) => {
            c.receiver.take_over |= args.take_over;
            c
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
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
    let exposure = crate::config::credential_exposure(&args.config);
    if let Some(w) = &exposure {
        tracing::warn!("{w}");
        if args.log_format == LogFormat::Text {
            eprintln!("warning: {w}");
        }
    }
    let journal_limits = config.journal.limits();
    let result = rt.block_on(async {
        // SIGHUP's default action is to end the process: from here on it never does (the
        // daemon reloads on it once it runs; tokio keeps the handler installed).
        #[cfg(unix)]
        let _hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let daemon = Daemon::new(config).await?;
        if let Some(w) = exposure {
            daemon
                .state()
                .journal(exposure_entry(w, crate::daemon::now_ms()), journal_limits)?;
        }
        daemon.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            if args.log_format == LogFormat::Text {
                eprintln!("error: {e}");
            }
            ExitCode::from(1)
        }
    }
}

/// Runs a fleet (a config with `pairs:`) until SIGTERM / Ctrl-C.
fn run_fleet(args: &RunArgs) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        tracing::error!("{e}");
        if args.log_format == LogFormat::Text {
            eprintln!("error: {e}");
        }
        ExitCode::from(1)
    };
    let config = match crate::fleet::FleetConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Some(w) = crate::config::credential_exposure(&args.config) {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = rt.block_on(async {
        #[cfg(unix)]
        let _hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let fleet = crate::fleet::Fleet::new(config).await?;
        fleet.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The journal entry of a config file readable by others.
fn exposure_entry(text: String, now: i64) -> crate::state::JournalEntry {
    crate::state::JournalEntry {
        time: now,
        first: now,
        count: 1,
        direction: "runner".into(),
        rule: "runner".into(),
        code: "CONFIG_READABLE".into(),
        level: "warning".into(),
        text,
        subject: serde_json::json!({"runner": "config"}),
        raw: serde_json::Value::Null,
    }
}
