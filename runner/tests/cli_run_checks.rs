//! `skladsync run` refuses a bad config or an unusable state directory with a clear message
//! (exit 1, no panic), and warns when its config holding credentials is readable by others.

use std::path::Path;
use std::process::Command;

/// Runs `skladsync run --config <config>`: (exit code, stderr).
fn run(config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .env_remove("SKLADSYNC_CRM_API_KEY")
        .env_remove("SKLADSYNC_MS_TOKEN")
        .env_remove("SKLADSYNC_MS_LOGIN")
        .env_remove("SKLADSYNC_MS_PASSWORD")
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config with inline credentials, the repository's rules, `state.path` at `state`, the
/// operator server on a free loopback port, and `extra` appended.
fn config(dir: &Path, state: &Path, extra: &str) -> std::path::PathBuf {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let path = dir.join("skladsync.yaml");
    std::fs::write(
        &path,
        format!(
            "crm: {{url: 'http://127.0.0.1:9', api_key: crm-key-123}}\n\
             moysklad: {{url: 'http://127.0.0.1:9/api/remap/1.2', token: ms-token-456}}\n\
             rules: {{dir: {rules:?}}}\n\
             state: {{path: {state:?}}}\n\
             webhooks: {{enabled: false}}\n\
             http: {{listen: '127.0.0.1:0'}}\n{extra}"
        ),
    )
    .expect("write config");
    path
}

#[test]
fn a_bad_config_is_refused_with_every_problem_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A state path that cannot be opened either: a runner that accepted the config would
    // stop there instead of running.
    let state = dir.path().join("state-file");
    std::fs::write(&state, "x").expect("write");
    let cfg = config(
        dir.path(),
        &state,
        "intervals: {retry_min: 1h, retry_max: 30m}\njournal: {max_days: 0}\n",
    );
    let (code, stderr) = run(&cfg);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: config file {}: 2 problems:",
            cfg.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("intervals.retry_min (1h) is greater than intervals.retry_max (30m)"),
        "{stderr}"
    );
    assert!(stderr.contains("journal.max_days (0)"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unusable_state_stops_the_start_with_the_remedy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("photos");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::write(state.join("cat.jpg"), b"\xff\xd8").expect("write");
    let cfg = config(dir.path(), &state, "");
    let (code, stderr) = run(&cfg);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: state directory {}: holds files that are not a skladsync state (cat.jpg)",
            state.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("docs/runner.md"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_config_readable_by_others_with_credentials_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state-file");
    std::fs::write(&state, "x").expect("write");
    let cfg = config(dir.path(), &state, "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (_, stderr) = run(&cfg);
    assert!(
        stderr.contains(&format!(
            "warning: config file {} holds credentials (crm.api_key, moysklad.token) and is readable by its group and by others (mode 0644)",
            cfg.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("crm-key-123") && !stderr.contains("ms-token-456"));
    // Owner-only: no warning.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (_, stderr) = run(&cfg);
    assert!(!stderr.contains("holds credentials"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn the_readable_config_warning_is_journalled() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let cfg = config(dir.path(), &state, "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The entry is written before the daemon runs; wait for it to run.
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        let running = line.contains("skladsync is running");
        seen.push(line);
        if running {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(
        seen.iter().any(|l| l.contains("skladsync is running")),
        "{}",
        seen.join("\n")
    );
    assert!(status.success(), "{status:?}\n{}", seen.join("\n"));
    let s = skladsync_runner::state::SyncState::open(&state).expect("state");
    let limits = skladsync_runner::state::JournalLimits::default();
    let entries = s
        .journal_entries(limits, skladsync_runner::daemon::now_ms())
        .expect("journal");
    let entry = entries
        .iter()
        .find(|e| e.code == "CONFIG_READABLE")
        .unwrap_or_else(|| panic!("no CONFIG_READABLE entry in {entries:?}"));
    assert_eq!(entry.level, "warning");
    assert!(
        entry.text.contains("readable by its group (mode 0640)"),
        "{}",
        entry.text
    );
    assert!(!entry.text.contains("crm-key-123"), "{}", entry.text);
}
