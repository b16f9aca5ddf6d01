//! `skladsync test`: run rule test cases, report pass/fail, diff failures, update
//! expectations, report coverage.

use std::process::ExitCode;

use skladsync_engine::Trace;

use crate::cli::TestArgs;
use crate::tooling::coverage::Coverage;
use crate::tooling::paint::{stdout_color, Paint};
use crate::tooling::testing::{self, Verdict};

/// Exit 0 when every case passes (and coverage is high enough), 1 otherwise.
pub fn run(args: &TestArgs) -> ExitCode {
    let paint = Paint {
        on: stdout_color(args.rules.color),
    };
    let rules = match super::load_rules_for_cases(&args.rules) {
        Ok((rules, _warnings)) => rules,
        Err(diags) => {
            eprint!("{}", diags.render(super::use_color(args.rules.color)));
            return ExitCode::from(1);
        }
    };
    let (cases, broken) = match testing::discover(&args.dir, &args.snapshots) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let want_coverage = args.coverage || args.min_coverage.is_some();
    let mut coverage = want_coverage.then(|| Coverage::new(&rules));
    let (mut passed, mut failed, mut updated) = (0usize, 0usize, 0usize);
    // A case that cannot be read fails on its own; the others still run.
    for b in &broken {
        failed += 1;
        println!("{}  {} ({})", paint.red("FAIL"), b.name, b.path.display());
        let diags = skladsync_engine::Diagnostics {
            items: vec![b.problem.clone()],
        };
        print!("{}", diags.render(paint.on));
    }
    for tc in &cases {
        let mut trace = Trace::default();
        let actual = testing::evaluate(&tc.case, &rules, want_coverage.then_some(&mut trace));
        if let Some(cov) = coverage.as_mut() {
            cov.add(&trace);
        }
        let verdict = match testing::judge(tc, &actual, paint) {
            Ok(v) => v,
            Err(e) => Verdict::Fail(format!("  {e}\n")),
        };
        match verdict {
            Verdict::Pass => {
                passed += 1;
                println!("{}  {}", paint.green("ok  "), tc.name);
            }
            _ if args.update => match testing::update(tc, &actual) {
                Ok(()) => {
                    updated += 1;
                    println!("{}  {}", paint.yellow("updated"), tc.name);
                }
                Err(e) => {
                    failed += 1;
                    println!("{}  {}: {e}", paint.red("FAIL"), tc.name);
                }
            },
            Verdict::Missing => {
                failed += 1;
                println!(
                    "{}  {} ({}): no expected plan yet; `skladsync test --update` records it",
                    paint.red("NEW "),
                    tc.name,
                    tc.path.display()
                );
            }
            Verdict::Fail(diff) => {
                failed += 1;
                println!("{}  {} ({})", paint.red("FAIL"), tc.name, tc.path.display());
                print!("{diff}");
            }
        }
    }
    let mut ok = failed == 0;
    if let Some(cov) = &coverage {
        print!("{}", cov.render(paint));
        if let Some(min) = args.min_coverage {
            if cov.percent() < min {
                println!(
                    "{}",
                    paint.red(&format!(
                        "coverage {:.1}% is below the minimum {min}%",
                        cov.percent()
                    ))
                );
                ok = false;
            }
        }
    }
    let tail = if updated > 0 {
        format!(", {updated} updated")
    } else {
        String::new()
    };
    println!("{passed} passed, {failed} failed{tail}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
