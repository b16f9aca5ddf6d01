//! `skladsync schema`: regenerate the JSON Schemas of rule files and of the settings file.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::SchemaArgs;
use crate::tooling::schema;

fn generate(args: &SchemaArgs) -> Result<Vec<(String, String)>, String> {
    let example = args
        .settings
        .clone()
        .unwrap_or_else(|| args.rules.join("settings.example.yaml"));
    let text =
        std::fs::read_to_string(&example).map_err(|e| format!("{}: {e}", example.display()))?;
    let additions_path = args.rules.join("settings.schema.yaml");
    let additions = std::fs::read_to_string(&additions_path).ok();
    let settings = schema::settings_schema(&text, additions.as_deref())
        .map_err(|e| format!("{}: {e}", example.display()))?;
    Ok(vec![
        (
            "rules.schema.json".to_owned(),
            schema::to_text(&schema::rules_schema()),
        ),
        (
            "settings.schema.json".to_owned(),
            schema::to_text(&settings),
        ),
        (
            "case.schema.json".to_owned(),
            schema::to_text(&schema::case_schema()),
        ),
    ])
}

/// Exit 0 when written (or, with `--check`, already current); 1 otherwise.
pub fn run(args: &SchemaArgs) -> ExitCode {
    let files = match generate(args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut stale = 0;
    for (name, text) in files {
        let path = args.out.join(&name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            continue;
        }
        if args.check {
            println!("{} is not current", path.display());
            stale += 1;
            continue;
        }
        if let Err(e) = write(&args.out, &path, &text) {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("wrote {}", path.display());
    }
    if stale > 0 {
        eprintln!("run `skladsync schema` to regenerate");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn write(dir: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(path, text)
}
