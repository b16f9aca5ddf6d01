//! The operator HTTP server: `/healthz`, `/readyz` and `/metrics` on a listener of its own with
//! webhooks off; `/metrics` parsed as Prometheus text, its numbers moving after work;
//! `/readyz` 503 when МойСклад refuses the credentials; with webhooks on and no `http:`
//! section, the same routes on the webhook listener (as configs written before it expect);
//! the status page's order lookup and language.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value as Json;
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions, MS_PASSWORD};
use tokio::sync::watch;

const TOKEN: &str = "operator-token-0123456789";

/// A config for `lab` in `dir`: the e2e rules, `webhooks` and `extra` appended.
fn config(lab: &Lab, dir: &Path, webhooks_off: bool, extra: &str) -> Config {
    let path = support::write_config(lab, &support::fixture_rules(), dir, 100);
    let mut text = std::fs::read_to_string(&path).expect("config");
    if webhooks_off {
        text.push_str("  enabled: false\n");
    }
    text.push_str(extra);
    std::fs::write(&path, text).expect("config");
    Config::load(&path).expect("config loads")
}

/// A daemon with its operator server running (on its own listener, or the receiver's).
async fn serve(cfg: Config) -> (Daemon, SocketAddr, watch::Sender<bool>) {
    let d = Daemon::new(cfg).await.expect("daemon");
    let (stop, rx) = watch::channel(false);
    d.spawn_receiver(rx.clone());
    d.spawn_operator(rx);
    let addr = d.operator_addr().expect("an operator server");
    (d, addr, stop)
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("a body"))
}

/// `/metrics` parsed as Prometheus text.
async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, text) = get(&format!("http://{addr}/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("unexpected sample {other:?}"),
    }
}

/// The sum of the samples of `metric` whose labels include `want`.
fn sum(s: &prometheus_parse::Scrape, metric: &str, want: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| want.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(value)
        .sum()
}

fn has(s: &prometheus_parse::Scrape, metric: &str) -> bool {
    s.samples.iter().any(|x| x.metric == metric)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_webhooks_off_health_readiness_and_metrics_are_served_and_move_after_work() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("http: {{listen: '127.0.0.1:0', operator_token: {TOKEN}}}\n");
    let (d, addr, stop) = serve(config(&lab, dir.path(), true, &extra)).await;
    assert_eq!(d.receiver_addr(), None, "no webhook receiver");
    let base = format!("http://{addr}");

    let (status, body) = get(&format!("{base}/healthz"), None).await;
    assert_eq!(status, 200, "{body}");
    // Only retailCRM was asked anything yet (its time zone, at start).
    let (status, body) = get(&format!("{base}/readyz"), None).await;
    assert_eq!(status, 503, "{body}");
    let why: Json = serde_json::from_str(&body).expect("JSON");
    assert_eq!(why["ready"], false);
    let reasons = why["reasons"].to_string();
    assert!(reasons.contains("moysklad: not reached yet"), "{reasons}");
    assert!(!reasons.contains("crm"), "retailCRM was reached: {reasons}");

    // The metrics want the token.
    assert_eq!(get(&format!("{base}/metrics"), None).await.0, 401);
    assert_eq!(get(&format!("{base}/metrics"), Some("wrong")).await.0, 401);
    let before = scrape(addr).await;
    assert_eq!(sum(&before, "skladsync_events_total", &[]), 0.0);
    assert_eq!(sum(&before, "skladsync_effects_total", &[]), 0.0);
    assert!(
        sum(
            &before,
            "skladsync_api_requests_total",
            &[("system", "crm")]
        ) >= 1.0
    );
    assert_eq!(
        sum(
            &before,
            "skladsync_api_requests_total",
            &[("system", "moysklad")]
        ),
        0.0
    );
    assert_eq!(
        sum(
            &before,
            "skladsync_rules_info",
            &[("version", &d.rules_version())]
        ),
        1.0
    );

    // Work: settings.saved, the CRM history (the seeded orders), the МойСклад poll.
    d.start_up().await.expect("start up");
    d.cycle().await.expect("cycle");
    d.drain().await.expect("drain");

    let (status, body) = get(&format!("{base}/readyz"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);

    let after = scrape(addr).await;
    let applied = sum(&after, "skladsync_events_total", &[("outcome", "applied")]);
    assert!(applied >= 2.0, "events applied: {applied}");
    assert!(
        sum(
            &after,
            "skladsync_events_total",
            &[("event", "crm.order.changed"), ("outcome", "applied")]
        ) >= 1.0
    );
    let created = sum(
        &after,
        "skladsync_effects_total",
        &[("kind", "create moysklad.customerorder"), ("outcome", "ok")],
    );
    assert!(created >= 1.0, "orders uploaded: {created}");
    assert!(
        sum(
            &after,
            "skladsync_api_requests_total",
            &[
                ("system", "moysklad"),
                ("endpoint", "entity/customerorder"),
                ("status", "200")
            ]
        ) >= 1.0
    );
    assert!(
        sum(
            &after,
            "skladsync_api_requests_total",
            &[("system", "crm"), ("endpoint", "orders")]
        ) >= 1.0
    );
    // Gauges: present and sane.
    for m in [
        "skladsync_inbox_items",
        "skladsync_inbox_oldest_age_seconds",
        "skladsync_parked_items",
        "skladsync_ratelimit_budget_units",
    ] {
        assert!(has(&after, m), "{m} missing");
    }
    let budget = sum(
        &after,
        "skladsync_ratelimit_budget_units",
        &[("system", "moysklad")],
    );
    let cap = sum(
        &after,
        "skladsync_ratelimit_capacity_units",
        &[("system", "moysklad")],
    );
    assert!(
        budget >= 0.0 && budget <= cap && cap > 0.0,
        "{budget} of {cap}"
    );
    // Each poll cursor read to the end has its lag.
    let lags: HashMap<String, f64> = after
        .samples
        .iter()
        .filter(|s| s.metric == "skladsync_poll_cursor_lag_seconds")
        .filter_map(|s| Some((s.labels.get("cursor")?.to_string(), value(s))))
        .collect();
    assert!(
        lags.keys().any(|k| k.contains("order")) && lags.keys().any(|k| k.starts_with("ms.")),
        "{lags:?}"
    );
    assert!(lags.values().all(|v| *v >= 0.0 && *v < 600.0), "{lags:?}");
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_with_the_reason_when_moysklad_refuses_the_credentials() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = support::write_config(&lab, &support::fixture_rules(), dir.path(), 100);
    let text = std::fs::read_to_string(&path)
        .expect("config")
        .replace(MS_PASSWORD, "not-the-password")
        + "  enabled: false\nhttp: {listen: '127.0.0.1:0'}\n";
    std::fs::write(&path, text).expect("config");
    let (d, addr, stop) = serve(Config::load(&path).expect("config")).await;
    d.cycle().await.expect("cycle");
    let (status, body) = get(&format!("http://{addr}/readyz"), None).await;
    assert_eq!(status, 503, "{body}");
    let why: Json = serde_json::from_str(&body).expect("JSON");
    let reasons: Vec<String> = why["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with("moysklad: the credentials were refused (401)"),
        "{reasons:?}"
    );
    // Still alive.
    assert_eq!(get(&format!("http://{addr}/healthz"), None).await.0, 200);
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_http_section_the_webhook_listener_serves_the_operator_routes() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&lab, dir.path(), false, "");
    let (d, addr, stop) = serve(cfg).await;
    assert_eq!(d.receiver_addr(), Some(addr), "one listener");
    assert_eq!(get(&format!("http://{addr}/healthz"), None).await.0, 200);
    // The token defaults to the webhook secret, kept in the state.
    let secret = d
        .state()
        .misc("webhook_secret")
        .expect("state")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("a secret");
    let (status, text) = get(&format!("http://{addr}/metrics"), Some(&secret)).await;
    assert_eq!(status, 200, "{text}");
    let (status, json) = get(&format!("http://{addr}/status/{secret}"), None).await;
    assert_eq!(status, 200);
    assert!(json.contains("\"journal\""), "{json}");
    assert_eq!(
        get(&format!("http://{addr}/ui/not-the-secret"), None)
            .await
            .0,
        404
    );
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_finds_an_order_and_links_both_web_uis_in_the_chosen_language() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("http: {{listen: '127.0.0.1:0', operator_token: {TOKEN}}}\n");
    let (d, addr, stop) = serve(config(&lab, dir.path(), true, &extra)).await;
    d.start_up().await.expect("start up");
    d.cycle().await.expect("cycle");
    let link = d
        .state()
        .links()
        .expect("links")
        .into_iter()
        .find(|l| l.kind == "order")
        .expect("an order was uploaded and linked");
    let crm_id = link.ids["crm"].as_i64().expect("crm id");
    let ms_id = link.ids["moysklad"].as_str().expect("ms id").to_string();
    let number = lab
        .crm
        .orders()
        .iter()
        .find(|o| o["id"] == crm_id)
        .and_then(|o| o["number"].as_str().map(str::to_string))
        .expect("its number");

    let page = |q: String, lang: Option<&'static str>| {
        let url = format!("http://{addr}/ui/{TOKEN}?{q}");
        async move {
            let mut req = reqwest::Client::new().get(url);
            if let Some(l) = lang {
                req = req.header("Accept-Language", l);
            }
            let r = req.send().await.expect("answer");
            assert_eq!(r.status(), 200);
            // minijinja escapes `/` too; a browser reads it back.
            r.text().await.expect("body").replace("&#x2f;", "/")
        }
    };
    let html = page(format!("order={number}"), Some("en-GB,en;q=0.9")).await;
    assert!(
        html.contains("<h2>Find an order</h2>"),
        "English by Accept-Language"
    );
    assert!(
        html.contains(&format!("/orders/{crm_id}/edit\"")),
        "a link into retailCRM: {html}"
    );
    assert!(
        html.contains(&format!("/app/#customerorder/edit?id={ms_id}\"")),
        "a link into МойСклад"
    );
    let html = page("order=NO-SUCH-ORDER&lang=ru".into(), Some("en")).await;
    assert!(
        html.contains("Заказ не найден в retailCRM"),
        "Russian by ?lang="
    );
    assert_eq!(
        get(&format!("http://{addr}/ui/wrong-token-000000000"), None)
            .await
            .0,
        404
    );
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skladsync_run_serves_healthz_and_readyz_with_webhooks_off() {
    use std::io::{BufRead, BufReader};
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = support::write_config(&lab, &support::fixture_rules(), dir.path(), 100);
    let text = std::fs::read_to_string(&path).expect("config")
        + "  enabled: false\nhttp: {listen: '127.0.0.1:0'}\n";
    std::fs::write(&path, text).expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Drained while the daemon runs (a full pipe would block it).
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let addr = tokio::task::spawn_blocking(move || {
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
            if let Some(rest) = line.split("operator=Some(").nth(1) {
                return rest.split(')').next().map(str::to_string);
            }
        }
        None
    })
    .await
    .expect("reader");
    let addr = addr.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the daemon did not report its operator address")
    });
    let (status, body) = get(&format!("http://{addr}/healthz"), None).await;
    // Ready once both APIs answered (the first polls run at start).
    let mut ready = (0, String::new());
    for _ in 0..100 {
        ready = get(&format!("http://{addr}/readyz"), None).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().expect("wait");
    assert_eq!(status, 200, "{body}");
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_own_address_the_operator_server_is_apart_from_the_receiver() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("http: {{listen: '127.0.0.1:0', operator_token: {TOKEN}}}\n");
    let (d, ops, stop) = serve(config(&lab, dir.path(), false, &extra)).await;
    let receiver = d.receiver_addr().expect("a receiver");
    assert_ne!(receiver, ops, "two listeners");
    assert_eq!(get(&format!("http://{ops}/healthz"), None).await.0, 200);
    assert_eq!(
        get(&format!("http://{ops}/metrics"), Some(TOKEN)).await.0,
        200
    );
    // The public receiver has no operator routes; the operator server no webhook path.
    assert_eq!(
        get(&format!("http://{receiver}/healthz"), None).await.0,
        404
    );
    assert_eq!(
        get(&format!("http://{receiver}/metrics"), Some(TOKEN))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&format!("http://{receiver}/ui/{TOKEN}"), None).await.0,
        404
    );
    let secret = d
        .state()
        .misc("webhook_secret")
        .expect("state")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("a secret");
    let post = |addr: SocketAddr| {
        let url = format!("http://{addr}/moysklad/webhook/{secret}?requestId=r1");
        async move {
            reqwest::Client::new()
                .post(url)
                .body("{\"events\":[]}")
                .send()
                .await
                .expect("answer")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(receiver).await, 200);
    assert_eq!(
        post(ops).await,
        404,
        "no webhook route on the operator server"
    );
    // Both keep the JSON status (the operator token opens it too).
    assert_eq!(
        get(&format!("http://{receiver}/status/{secret}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        get(&format!("http://{ops}/status/{TOKEN}"), None).await.0,
        200
    );
    let _ = stop.send(true);
}
