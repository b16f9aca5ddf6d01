//! `skladsync demo` runs on its own (both emulators in-process, no accounts, no network),
//! exits 0 and prints the summary.

use std::process::Command;

#[test]
fn the_demo_runs_and_prints_the_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .arg("demo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run skladsync demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    for part in [
        "Cycle 1: first sync",
        "Cycle 2: after the manager's work",
        "Cycle 3: a new order",
        "CRM → МойСклад",
        "МойСклад → CRM",
        "Orders at the end",
        "Stock rows updated in CRM",
        "Documents in МойСклад",
        "Journal:",
        "Done in",
    ] {
        assert!(stdout.contains(part), "missing {part:?} in\n{stdout}");
    }
    // The demo order was uploaded.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("A-1005") && !l.contains("not uploaded")),
        "{stdout}"
    );
}
