//! `skladsync case new`: the scaffold of a test case.

use std::fmt::Write as _;
use std::path::{Component, Path};
use std::process::ExitCode;

use crate::cli::CaseNewArgs;

/// The relative path from the case's folder to `schema/case.schema.json`, found by walking
/// up from the case to a folder that has `schema/case.schema.json`.
pub(crate) fn schema_ref(case: &Path) -> String {
    let dir = case.parent().unwrap_or(Path::new(""));
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut up = String::new();
    let mut at = abs.as_path();
    loop {
        if at.join("schema/case.schema.json").is_file() {
            return format!("{up}schema/case.schema.json");
        }
        match at.parent() {
            Some(p) if at.components().next_back() != Some(Component::RootDir) => {
                up.push_str("../");
                at = p;
            }
            _ => return "schema/case.schema.json".to_owned(),
        }
    }
}

/// Writes the scaffold; exit 1 when the event is not declared or the file exists.
pub fn new(args: &CaseNewArgs) -> ExitCode {
    let rules = match super::load_rules_for_cases(&args.rules) {
        Ok((rules, _)) => rules,
        Err(diags) => {
            eprint!("{}", diags.render(super::use_color(args.rules.color)));
            return ExitCode::from(1);
        }
    };
    if args.path.exists() {
        eprintln!("error: {} exists", args.path.display());
        return ExitCode::from(1);
    }
    if let Some(from) = &args.from {
        return from_recording(args, &rules, from);
    }
    let Some(event) = args.event.as_deref() else {
        eprintln!("error: give --event NAME or --from RECORDING:LINE");
        return ExitCode::from(1);
    };
    if let Err(e) = rules.check_event(event) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let fields: Vec<(String, String)> = rules
        .events()
        .find(|(name, _)| *name == event)
        .map(|(_, info)| {
            info.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut text = format!(
        "# yaml-language-server: $schema={}\n",
        schema_ref(&args.path)
    );
    text.push_str(
        "doc: What this case shows, in one or two sentences (the requirement id first).\n",
    );
    if !args.include.is_empty() {
        text.push_str("include:\n");
        for i in &args.include {
            let _ = writeln!(text, "  - {i}");
        }
    }
    text.push_str("event:\n");
    let _ = writeln!(text, "  event: {event}");
    text.push_str("  now: \"2024-05-01 10:00:00\"\n");
    for (k, v) in &fields {
        let _ = writeln!(text, "  # {}", v.replace('\n', " "));
        let _ = writeln!(text, "  {k}: null");
    }
    text.push_str(
        "# What the other system holds: only what differs from the included fragments.\n",
    );
    text.push_str("world: {}\n");
    text.push_str("# Settings overrides, merged over the rules' example settings.\n");
    text.push_str("settings: {}\n");
    if let Some(parent) = args.path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!("error: {}: {e}", parent.display());
            return ExitCode::from(1);
        }
    }
    if let Err(e) = std::fs::write(&args.path, text) {
        eprintln!("error: {}: {e}", args.path.display());
        return ExitCode::from(1);
    }
    println!(
        "wrote {}; fill in the event, then `skladsync test {} --update` records its plan",
        args.path.display(),
        args.path.display()
    );
    ExitCode::SUCCESS
}

/// `FILE:LINE` (or `FILE`, its first line) of a recording.
fn recording_line(from: &str) -> Result<(std::path::PathBuf, usize, String), String> {
    let (file, line) = match from.rsplit_once(':') {
        Some((f, l)) if !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()) => {
            (f, l.parse::<usize>().map_err(|e| format!("{from}: {e}"))?)
        }
        _ => (from, 1),
    };
    let path = std::path::PathBuf::from(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
    let count = text.lines().count();
    let found = line
        .checked_sub(1)
        .and_then(|i| text.lines().nth(i))
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("{file} has no recording on line {line} (it has {count} lines)"))?;
    Ok((path, line, found.to_owned()))
}

/// Writes a case file from a recorded evaluation.
fn from_recording(args: &CaseNewArgs, rules: &skladsync_engine::RuleSet, from: &str) -> ExitCode {
    let (file, line, text) = match recording_line(from) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {}:{line}: not a recording: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    let event = doc
        .pointer("/event/event")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if let Err(e) = rules.check_event(event) {
        eprintln!("error: {}:{line}: {e}", file.display());
        return ExitCode::from(1);
    }
    let mut out = format!(
        "# yaml-language-server: $schema={}\n",
        schema_ref(&args.path)
    );
    let said = doc
        .get("doc")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "doc: {}",
        serde_json::Value::String(format!(
            "What this case shows (the requirement id first). From {}:{line}. {said}",
            file.display()
        ))
    );
    for key in ["event", "world", "settings", "expect"] {
        let value = doc.get(key).cloned().unwrap_or(serde_json::Value::Null);
        let mut one = serde_json::Map::new();
        one.insert(key.to_owned(), value);
        match serde_yaml::to_string(&serde_json::Value::Object(one)) {
            Ok(y) => out.push_str(&y),
            Err(e) => {
                eprintln!("error: {}:{line}: {e}", file.display());
                return ExitCode::from(1);
            }
        }
    }
    if let Some(parent) = args.path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!("error: {}: {e}", parent.display());
            return ExitCode::from(1);
        }
    }
    if let Err(e) = std::fs::write(&args.path, out) {
        eprintln!("error: {}: {e}", args.path.display());
        return ExitCode::from(1);
    }
    println!(
        "wrote {} from {}:{line}; say what it shows in `doc:`, add `include:` of shared \
         fragments and `skladsync case shrink {}` drops what they already say (it keeps the \
         plan), trim the world to what matters, and `skladsync test {}` checks the rules \
         still make that plan",
        args.path.display(),
        file.display(),
        args.path.display(),
        args.path.display()
    );
    ExitCode::SUCCESS
}
