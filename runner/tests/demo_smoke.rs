//! `skladsync demo` runs on its own (both emulators in-process, no accounts, no network),
//! exits 0 and prints the summary.

use std::process::Command;

/// The permission bits of a file.
#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn the_demo_runs_and_prints_the_summary() {
    let keep = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .arg("demo")
        .arg("--keep")
        .arg(keep.path())
        .arg("--record")
        .arg(keep.path().join("recordings"))
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
    // The kept config holds the emulators' credentials: owner-only.
    #[cfg(unix)]
    assert_eq!(mode(&keep.path().join("skladsync.yaml")), 0o600);

    // The demo's recording replays: under the same rules, `diff` finds no plan changed and
    // `test` finds every recorded plan again.
    let rules = skladsync_runner::demo::rules_dir(std::path::Path::new("rules"));
    let rec = keep.path().join("recordings");
    let settings = keep.path().join("settings.yaml");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run skladsync");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = run(&[
        "diff".as_ref(),
        "--base".as_ref(),
        rules.as_os_str(),
        "--corpus".as_ref(),
        rec.as_os_str(),
        "--rules".as_ref(),
        rules.as_os_str(),
        "--settings".as_ref(),
        settings.as_os_str(),
        "--color".as_ref(),
        "never".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no plan changed"), "{out}");
    let events: usize = out
        .split("no plan changed (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(events >= 10, "only {events} events recorded: {out}");
    let (code, out) = run(&[
        "test".as_ref(),
        rec.as_os_str(),
        "--rules".as_ref(),
        rules.as_os_str(),
        "--settings".as_ref(),
        settings.as_os_str(),
        "--color".as_ref(),
        "never".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("{events} passed, 0 failed")), "{out}");
}

#[test]
fn emulate_serves_both_emulators_until_stopped() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("skladsync.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["emulate", "--write-config"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run skladsync emulate");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line.contains("Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    let url_after = |label: &str| -> String {
        lines
            .iter()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string()
    };
    let crm = url_after("retailCRM emulator:");
    let ms = url_after("МойСклад emulator:");
    assert!(crm.starts_with("http://127.0.0.1:"), "{text}");
    assert!(ms.ends_with("/api/remap/1.2"), "{text}");
    assert!(
        text.contains("store.main"),
        "the shop's ids are listed: {text}"
    );
    // Both answer, with the credentials printed.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let sites = reqwest::Client::new()
            .get(format!("{crm}/api/v5/reference/sites"))
            .header("X-API-KEY", "emulator-key")
            .send()
            .await
            .expect("retailCRM answers");
        assert!(sites.status().is_success());
        let stores = reqwest::Client::new()
            .get(format!("{ms}/entity/store"))
            .basic_auth("admin@emulator", Some("emulator-password"))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .expect("МойСклад answers");
        assert!(stores.status().is_success(), "{}", stores.status());
    });
    let written = std::fs::read_to_string(&config).expect("config written");
    assert!(written.contains(&crm) && written.contains(ms.as_str()));
    // It holds the emulators' credentials: owner-only.
    #[cfg(unix)]
    assert_eq!(mode(&config), 0o600);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("wait").success());
}
