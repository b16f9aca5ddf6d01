//! `skladsync check`: load and statically check rules and settings.

use std::process::ExitCode;

use crate::cli::RuleArgs;

/// Exit 0 when clean (warnings allowed), 1 on any error.
pub fn run(args: &RuleArgs) -> ExitCode {
    let color = super::use_color(args.color);
    match super::load_rules(args) {
        Ok((rules, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{}", warnings.render(color));
            }
            let (_, w) = warnings.counts();
            let settings = super::settings_path(args).map_or_else(
                || "no settings file".to_owned(),
                |p| p.display().to_string(),
            );
            println!(
                "ok: {} rules in {} files, settings from {settings}{}",
                rules.rules().len(),
                rules.files().len(),
                if w > 0 {
                    format!(", {w} warning(s)")
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprint!("{}", diags.render(color));
            let (e, w) = diags.counts();
            eprintln!("error: {e} error(s), {w} warning(s)");
            ExitCode::from(1)
        }
    }
}
