//! The status page in a real browser: Debian's headless Chromium loads `/ui/<token>` from a
//! running daemon (webhooks off, the operator server on its own listener) and the test reads
//! the DOM Chromium built (`--dump-dom`): the journal is there, a filter given as a GET query
//! narrows it, and a journal text holding `<script>` is text, never an element (and never ran).
//!
//! Chromium must be installed (`apt-get install -y chromium`; `.ci/run` does it): without it
//! the test fails and says so. `CHROMIUM` may name another binary. Nothing is written to the
//! repository (the profile lives in a temporary directory; no screenshots).

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::state::JournalEntry;
use tokio::sync::watch;

const TOKEN: &str = "browser-token-0123456789";
const PROBE: &str = "<script>alert(1)</script>";
/// Would mark the body if it ran.
const PROBE_2: &str = "<script>document.body.setAttribute('data-pwned','1')</script><img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">";

/// The Chromium binary: `$CHROMIUM`, else `chromium` on the `PATH`. Panics, saying how to get
/// it, when there is none.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Chromium is not installed, and this test needs it: `apt-get install -y chromium` \
             (.ci/run installs it when missing), or set CHROMIUM to a Chromium binary"
        )
    })
}

/// The DOM Chromium builds for `url`.
async fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--lang=en-US",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg("--dump-dom")
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start Chromium ({}): {e}", chromium().display()));
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("Chromium answered within 90 s")
        .expect("Chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "Chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The cells of class `class` in the journal's rows, in order.
fn cells(dom: &str, class: &str) -> Vec<String> {
    let open = format!("<td class=\"{class}\">");
    dom.split("<tr class=\"entry")
        .skip(1)
        .filter_map(|row| {
            let start = row.find(&open)? + open.len();
            let len = row[start..].find("</td>")?;
            Some(row[start..start + len].to_string())
        })
        .collect()
}

fn entry(code: &str, level: &str, direction: &str, text: &str, order: &str) -> JournalEntry {
    let now = support::now();
    JournalEntry {
        time: now,
        first: now,
        count: 1,
        direction: direction.into(),
        rule: "test.rule".into(),
        code: code.into(),
        level: level.into(),
        text: text.into(),
        subject: json!({"number": order, "counterparty": format!("Клиент {order}")}),
        raw: json!(null),
    }
}

async fn serve(lab: &Lab, dir: &std::path::Path) -> (Daemon, SocketAddr, watch::Sender<bool>) {
    let path = support::write_config(lab, &support::fixture_rules(), dir, 100);
    let text = std::fs::read_to_string(&path).expect("config")
        + &format!("  enabled: false\nhttp: {{listen: '127.0.0.1:0', operator_token: {TOKEN}}}\n");
    std::fs::write(&path, text).expect("config");
    let d = Daemon::new(Config::load(&path).expect("config"))
        .await
        .expect("daemon");
    let (stop, rx) = watch::channel(false);
    d.spawn_operator(rx).expect("the operator server");
    let addr = d.operator_addr().expect("its address");
    (d, addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_filters_and_shows_script_as_text_in_chromium() {
    let browser = chromium();
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, addr, stop) = serve(&lab, dir.path()).await;
    // Real work first (the seeded orders), then entries whose texts come from outside.
    d.start_up().await.expect("start up");
    d.cycle().await.expect("cycle");
    let limits = d.journal_limits();
    for e in [
        entry("XSS_PROBE", "warning", "crm→moysklad", PROBE, "X-1"),
        entry("XSS_PROBE_2", "info", "moysklad→crm", PROBE_2, "X-2"),
    ] {
        d.state().journal(e, limits).expect("journal");
    }
    let total = d
        .state()
        .journal_entries(limits, support::now())
        .expect("journal")
        .len();
    assert!(total > 2, "the cycle journalled too: {total}");

    let base = format!("http://{addr}/ui/{TOKEN}");
    let dom = dump_dom(&format!("{base}?lang=en")).await;
    assert!(dom.contains("<h2>Journal</h2>"), "{dom}");
    assert!(
        dom.contains(&format!(
            "id=\"rules-version\" class=\"mono\">{}<",
            d.rules_version()
        )),
        "the live rule set's version"
    );
    let codes = cells(&dom, "code");
    assert_eq!(codes.len(), total, "every entry is a row: {codes:?}");
    assert!(codes.iter().any(|c| c == "XSS_PROBE"), "{codes:?}");
    // The probe is text: its markup is escaped in the serialized DOM, no script element
    // exists (the page has none of its own), and nothing it holds ran.
    let texts = cells(&dom, "text");
    assert!(
        texts.contains(&"&lt;script&gt;alert(1)&lt;/script&gt;".to_string()),
        "{texts:?}"
    );
    assert!(!dom.contains(PROBE), "the probe became an element");
    assert!(!dom.to_lowercase().contains("<script"), "a script element");
    assert!(!dom.to_lowercase().contains("<img"), "an img element");
    let body = dom
        .split("<body")
        .nth(1)
        .and_then(|b| b.split('>').next())
        .expect("a body element");
    assert!(!body.contains("data-pwned"), "the probe ran: <body{body}>");
    assert!(
        dom.contains("data-pwned"),
        "the second probe is shown, as text"
    );

    // A filter as a GET query (what the form sends) narrows the journal.
    let dom = dump_dom(&format!("{base}?lang=en&level=warning&code=xss_probe")).await;
    assert_eq!(cells(&dom, "code"), vec!["XSS_PROBE".to_string()]);
    assert!(
        dom.contains("<option value=\"warning\" selected=\"\">"),
        "{dom}"
    );
    let dom = dump_dom(&format!(
        "{base}?subject=X-2&direction=moysklad%E2%86%92crm"
    ))
    .await;
    assert_eq!(cells(&dom, "code"), vec!["XSS_PROBE_2".to_string()]);
    assert!(
        dom.contains("<h2>Journal</h2>"),
        "English from the browser's Accept-Language (--lang=en-US)"
    );
    // A filter matching an order the cycle journalled; Russian asked for.
    let dom = dump_dom(&format!("{base}?lang=ru&subject=A-1003")).await;
    assert!(dom.contains("<h2>Журнал</h2>"), "Russian by ?lang=ru");
    let subjects = cells(&dom, "subject");
    assert!(
        !subjects.is_empty() && subjects.iter().all(|s| s.contains("A-1003")),
        "{subjects:?}"
    );
    let _ = stop.send(true);
    drop(browser);
}
