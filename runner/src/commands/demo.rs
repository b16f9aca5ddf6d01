//! `skladsync demo`.

use std::process::ExitCode;

use crate::cli::DemoArgs;

/// Runs the demo; exit 0 when it completed.
pub fn run(args: &DemoArgs) -> ExitCode {
    if args.verbose {
        super::run::init_logging("info");
    }
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
    match rt.block_on(crate::demo::run(&crate::demo::DemoArgs {
        rules: args.rules.clone(),
        settings: args.settings.clone(),
        keep: args.keep.clone(),
        record: args.record.clone(),
        verbose: args.verbose,
    })) {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
