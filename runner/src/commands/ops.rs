//! The operator commands: `journal`, `status`, `relink`, `completions`, `man`.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value as Json;

use crate::cli::{
    CompletionsArgs, JournalArgs, Level, ManArgs, RelinkArgs, StatusArgs, TargetArgs,
};
use crate::ops::{relink, OpsError, Target};

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn target(args: &TargetArgs) -> Result<Target, OpsError> {
    // The default config is optional when --state or --status-url says where to read.
    let config = if args.config.is_file() || (args.state.is_none() && args.status_url.is_none()) {
        Some(args.config.as_path())
    } else {
        None
    };
    let mut t = Target::from_config(config, args.state.as_deref(), args.status_url.clone())?;
    t.pair = args.pair.clone();
    Ok(t)
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn level_rank(level: &str) -> Level {
    match level {
        "error" => Level::Error,
        "warning" => Level::Warning,
        _ => Level::Info,
    }
}

/// Whether an entry passes the filters.
fn wanted(args: &JournalArgs, e: &Json) -> bool {
    let s = |k: &str| e.get(k).and_then(Json::as_str).unwrap_or_default();
    if let Some(min) = args.level {
        if level_rank(s("level")) < min {
            return false;
        }
    }
    if !args.code.is_empty() && !args.code.iter().any(|c| c.eq_ignore_ascii_case(s("code"))) {
        return false;
    }
    if let Some(sub) = &args.subject {
        let subject = e.get("subject").map(Json::to_string).unwrap_or_default();
        if !subject.to_lowercase().contains(&sub.to_lowercase()) {
            return false;
        }
    }
    true
}

/// `2026-12-04 21:30:01Z` of unix milliseconds.
fn when(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

/// One entry as a line (or a few: the text keeps its own lines, indented).
fn entry_line(e: &Json) -> String {
    let s = |k: &str| e.get(k).and_then(Json::as_str).unwrap_or_default();
    let count = e.get("count").and_then(Json::as_u64).unwrap_or(1);
    let times = if count > 1 {
        format!(" ×{count}")
    } else {
        String::new()
    };
    let subject = e.get("subject").map(Json::to_string).unwrap_or_default();
    let text = s("text").replace('\n', "\n    ");
    format!(
        "{} {:<7} {}{times} [{}] {} {subject}\n    {text}",
        when(e.get("time").and_then(Json::as_i64)),
        s("level"),
        s("code"),
        s("direction"),
        s("rule"),
    )
}

/// The identity of one writing of an entry: its subject and code, and when it was written.
fn writing(e: &Json) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        e.get("code").map(Json::to_string).unwrap_or_default(),
        e.get("subject").map(Json::to_string).unwrap_or_default(),
        e.get("time").map(Json::to_string).unwrap_or_default(),
        e.get("count").map(Json::to_string).unwrap_or_default(),
    )
}

fn print_entries(args: &JournalArgs, entries: &[&Json]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for e in entries {
        if args.json {
            writeln!(out, "{e}")?;
        } else {
            writeln!(out, "{}", entry_line(e))?;
        }
    }
    out.flush()
}

/// `skladsync journal`.
pub fn journal(args: &JournalArgs) -> ExitCode {
    let target = match target(&args.target) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async {
        let mut seen: HashSet<String> = HashSet::new();
        let every = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
        loop {
            let snap = match target.snapshot().await {
                Ok(s) => s,
                Err(e) if args.follow && !seen.is_empty() => {
                    // The daemon restarting, the state changing hands: try again.
                    eprintln!("warning: {e}");
                    tokio::time::sleep(every).await;
                    continue;
                }
                Err(e) => return fail(e),
            };
            let entries = snap
                .get("journal")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            // Oldest first: the newest is at the bottom, as in a log.
            let mut new: Vec<&Json> = entries
                .iter()
                .rev()
                .filter(|e| wanted(args, e) && !seen.contains(&writing(e)))
                .collect();
            new.sort_by_key(|e| e.get("time").and_then(Json::as_i64).unwrap_or_default());
            if let Err(e) = print_entries(args, &new) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
                return fail(e);
            }
            if !args.follow {
                return ExitCode::SUCCESS;
            }
            seen.extend(entries.iter().map(writing));
            // Something to remember even when the journal is empty: not the first pass.
            seen.insert(String::new());
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
}

/// `skladsync status`.
pub fn status(args: &StatusArgs) -> ExitCode {
    let target = match target(&args.target) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let snap = match rt.block_on(target.snapshot()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snap).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    print!("{}", status_text(&snap));
    ExitCode::SUCCESS
}

/// The status for people.
pub fn status_text(s: &Json) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let src = match s.get("source").and_then(Json::as_str) {
        Some("daemon") => "the running daemon",
        _ => "the state directory (the daemon is not running)",
    };
    let _ = writeln!(out, "Read from: {src}");
    let _ = writeln!(
        out,
        "Rules version: {} (live since {})",
        s.get("rules_version")
            .and_then(Json::as_str)
            .unwrap_or("unknown"),
        when(s.get("rules_since").and_then(Json::as_i64))
    );
    if let Some(r) = s.get("rules_refused").filter(|r| !r.is_null()) {
        let _ = writeln!(
            out,
            "Last reload REFUSED at {} ({}):",
            when(r.get("at").and_then(Json::as_i64)),
            r.get("trigger").and_then(Json::as_str).unwrap_or_default()
        );
        for d in r
            .get("diagnostics")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let _ = writeln!(out, "  {}", d.as_str().unwrap_or_default());
        }
    }
    let waiting = s
        .get("waiting")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let parked: Vec<&Json> = waiting
        .iter()
        .filter(|w| w.get("parked").is_some_and(|p| !p.is_null()))
        .collect();
    let in_plan = waiting
        .iter()
        .filter(|w| w.get("plan").and_then(Json::as_bool) == Some(true))
        .count();
    let _ = writeln!(
        out,
        "Waiting: {} item(s), {} parked, {} with a plan being applied",
        s.get("waiting_count")
            .and_then(Json::as_u64)
            .unwrap_or(waiting.len() as u64),
        parked.len(),
        in_plan
    );
    for w in &waiting {
        let subject = w.get("subject").and_then(Json::as_str).unwrap_or("-");
        let seq = w.get("seq").map(Json::to_string).unwrap_or_default();
        let attempts = w.get("attempts").and_then(Json::as_u64).unwrap_or(0);
        if let Some(p) = w.get("parked").filter(|p| !p.is_null()) {
            let _ = writeln!(
                out,
                "  #{seq} {subject}: PARKED since {} (rules {}): {}",
                when(p.get("at").and_then(Json::as_i64)),
                p.get("rules").and_then(Json::as_str).unwrap_or_default(),
                p.get("reason").and_then(Json::as_str).unwrap_or_default()
            );
        } else {
            let err = w
                .get("last_error")
                .and_then(Json::as_str)
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  #{seq} {subject}: not before {}, {attempts} attempt(s){err}",
                when(w.get("not_before").and_then(Json::as_i64))
            );
        }
    }
    if let Some(c) = s.get("cursors").and_then(Json::as_object) {
        let _ = writeln!(out, "Cursors:");
        for (k, v) in c {
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
    if let Some(l) = s.get("links_by_kind").and_then(Json::as_object) {
        let _ = writeln!(out, "Links:");
        for (k, v) in l {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    let journal = s
        .get("journal")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let count = |lvl: &str| {
        journal
            .iter()
            .filter(|e| e.get("level").and_then(Json::as_str) == Some(lvl))
            .count()
    };
    let _ = writeln!(
        out,
        "Journal: {} error(s), {} warning(s), {} info",
        count("error"),
        count("warning"),
        count("info")
    );
    if s.get("source").and_then(Json::as_str) == Some("daemon") {
        let _ = writeln!(out, "Counters since the daemon started:");
        for k in ["links", "failures", "parked", "gave_up"] {
            if let Some(v) = s.get(k) {
                let _ = writeln!(out, "  {k}: {v}");
            }
        }
        for k in ["events", "effects"] {
            if let Some(m) = s.get(k).and_then(Json::as_object) {
                let _ = writeln!(out, "  {k}:");
                for (name, n) in m {
                    let _ = writeln!(out, "    {name}: {n}");
                }
            }
        }
    }
    out
}

/// `skladsync relink`.
pub fn relink(args: &RelinkArgs) -> ExitCode {
    let config = match crate::config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let state = match crate::state::open_pair_state_sync(&config.state, crate::state::DEFAULT_PAIR) {
        Ok(s) => s,
        Err(e) if e.is_in_use() => {
            return fail(format!(
                "{e}\nrelink rewrites the link store: stop the daemon first (sled lets one process open the state)"
            ))
        }
        Err(e) => return fail(e),
    };
    // PostgreSQL: the pair's lease, or the daemon holding it is still running.
    let lease = match state
        .pg()
        .map(|pg| pg.acquire(crate::state::lease::runner_id(), config.state.lease.0))
    {
        None => None,
        Some(Ok(crate::state::LeaseAttempt::Taken(_))) => state.pg().cloned().map(LetGo),
        Some(Ok(crate::state::LeaseAttempt::Held { holder, .. })) => {
            return fail(format!(
                "the pair's lease is held by {holder:?}: relink rewrites the link store, stop \
                 the daemon first"
            ))
        }
        Some(Err(e)) => return fail(e),
    };
    let _lease = lease;
    let systems = match crate::daemon::systems_of(&config, None, None) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let changes = match rt.block_on(relink::plan(&systems, &state)) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"dry_run": args.dry_run, "changes": changes})
        );
    } else {
        for c in &changes {
            println!("{c}");
        }
        let n = |a: relink::Action| changes.iter().filter(|c| c.action == a).count();
        println!(
            "{} to add, {} to change, {} to remove{}",
            n(relink::Action::Add),
            n(relink::Action::Change),
            n(relink::Action::Remove),
            if args.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
    }
    if !args.dry_run && !changes.is_empty() {
        if let Err(e) = relink::apply(&state, &changes) {
            return fail(e);
        }
        if !args.json {
            println!("written");
        }
    }
    ExitCode::SUCCESS
}

/// A lease taken for one command, let go when it ends (however it ends).
struct LetGo(crate::state::PgStore);

impl Drop for LetGo {
    fn drop(&mut self) {
        if let Err(e) = self.0.release() {
            eprintln!("warning: the pair's lease could not be let go ({e}); it expires by itself");
        }
    }
}

/// `skladsync completions <shell>`.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "skladsync", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `skladsync man`.
pub fn man(args: &ManArgs) -> ExitCode {
    use clap::CommandFactory;
    let cmd = crate::cli::Cli::command();
    match &args.out {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return fail(format!("{}: {e}", dir.display()));
            }
            match clap_mangen::generate_to(cmd, dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("{}: {e}", dir.display())),
            }
        }
        None => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
                return fail(e);
            }
            let _ = std::io::stdout().write_all(&out);
            ExitCode::SUCCESS
        }
    }
}
