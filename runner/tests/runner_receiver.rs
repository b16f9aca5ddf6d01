//! The webhook receiver holds under abuse (issue 9, item 5): thousands of connections that
//! send half a header and stall do not keep a real webhook out; headers and bodies have read
//! timeouts; a body larger than the limit is refused with 413 before it is read; requests past
//! the concurrency cap get 503 at once.
//!
//! Everything talks to loopback. The number of slow connections is at most 20 000 and bounded
//! by this process's open-file limit (the soft limit is raised to the hard one, then read from
//! `/proc/self/limits`): each slow connection costs the test one descriptor, the receiver holds
//! at most `max_connections` more; the other tests of this file run beside it. With `ulimit -Hn`
//! 20 000 that is about 16 700 connections.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::shop::render;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const SECRET: &str = "receiver-test-secret";

/// A daemon on the lab with a receiver running, and `extra` appended to its config.
struct Rig {
    lab: Lab,
    daemon: Daemon,
    stop: watch::Sender<bool>,
    receiver: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(extra: &str) -> Rig {
        Rig::start_with(false, extra).await
    }

    async fn start_with(register: bool, extra: &str) -> Rig {
        let lab = Lab::start(LabOptions {
            crm_rate: None,
            ms_limits: false,
            seed: true,
        })
        .await
        .expect("lab");
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = dir.path().join("settings.yaml");
        std::fs::write(
            &settings,
            render(support::SETTINGS, &lab.shop.placeholders()),
        )
        .expect("settings");
        let text = lab.config_yaml(
            &support::fixture_rules(),
            &settings,
            &dir.path().join("state"),
            support::INTERVALS,
            100,
        ) + &format!("  secret: {SECRET}\n  register: {register}\n")
            + extra;
        let cfg = Config::from_yaml(&text, dir.path(), &|_| None).expect("config");
        let daemon = Daemon::new(cfg).await.expect("daemon");
        let (stop, rx) = watch::channel(false);
        let receiver = daemon.spawn_receiver(rx);
        Rig {
            lab,
            daemon,
            stop,
            receiver,
            _dir: dir,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.daemon.receiver_addr().expect("receiver")
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(r) = self.receiver {
            let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
        }
    }

    async fn status(&self) -> Value {
        reqwest::Client::new()
            .get(format!("http://{}/status/{SECRET}", self.addr()))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("status answered")
            .json()
            .await
            .expect("status json")
    }
}

/// A МойСклад notification about one customer order.
fn notification(id: &str) -> Value {
    json!({"events": [{
        "meta": {"type": "customerorder",
                 "href": format!("https://api.moysklad.ru/api/remap/1.2/entity/customerorder/{id}")},
        "action": "UPDATE", "accountId": "99999999-0000-11ef-0a80-000000000009",
        "updatedFields": ["state"]}]})
}

/// The soft limit of open files of this process.
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Opens `n` connections that each send half a request header and stall.
async fn slow_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let gate = gate.clone();
        tasks.spawn(async move {
            let _p = gate.acquire_owned().await.ok()?;
            let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
                .await
                .ok()?
                .ok()?;
            s.write_all(b"POST /moysklad/webhook/guess HTTP/1.1\r\nHost: x\r\nContent-")
                .await
                .ok()?;
            Some(s)
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(s)) = r {
            out.push(s);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_slow_connections_do_not_keep_a_real_webhook_out() {
    // The header timeout is long here so that every slow connection is still hanging when
    // the real webhook comes: what lets it in is the connection cap, not the timeout.
    let mut rig = Rig::start("receiver:\n  header_timeout: 120s\n  max_connections: 256\n").await;
    let addr = rig.addr();
    // As many as fit under the open-file limit (raised to the hard limit first), up to
    // 20 000: each costs this process one descriptor, the receiver holds at most its cap.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let limit = open_file_limit();
    let n = 20_000.min(limit.saturating_sub(open_fds() + 256 + 3_000));
    assert!(
        n >= 3_000,
        "this test needs `ulimit -n` of at least 4 500 (have {limit})"
    );
    let slow = slow_connections(addr, n).await;
    eprintln!("{} slow connections open (ulimit -n {limit})", slow.len());
    assert!(
        slow.len() >= n * 9 / 10,
        "the slow connections were opened ({} of {n})",
        slow.len()
    );

    // While they hang, a real webhook is answered and its work is in the inbox.
    let id = "7a1f2c3d-0000-11ef-0a80-000000000777";
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{addr}/moysklad/webhook/{SECRET}?requestId=real-1"
        ))
        .json(&notification(id))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the real webhook is answered");
    assert_eq!(answer.status(), 200);
    let queued = rig
        .daemon
        .state()
        .inbox()
        .expect("inbox")
        .into_iter()
        .any(|(_, i)| i.work.subject().as_deref() == Some(&format!("moysklad/customerorder/{id}")));
    assert!(queued, "the real webhook's work is in the inbox");

    // The receiver held at most its cap: the slow connections beyond it were closed, and
    // this process holds (about) one descriptor per slow connection, not two.
    let status = rig.status().await;
    let r = &status["receiver"];
    assert!(
        r["connections_open"].as_u64().is_some_and(|o| o <= 256),
        "{r}"
    );
    assert!(
        r["connections_evicted"]
            .as_u64()
            .is_some_and(|e| e as usize >= slow.len() - 256),
        "{r}"
    );
    assert!(open_fds() < slow.len() + 256 + 1_000, "fds {}", open_fds());

    // Stopping does not wait for them (their header timeout is 120 s, the grace for
    // requests in progress 10 s): connections without a request in progress are closed.
    let _ = rig.stop.send(true);
    let receiver = rig.receiver.take().expect("receiver task");
    tokio::time::timeout(Duration::from_secs(5), receiver)
        .await
        .expect("the receiver stopped without waiting for the slow connections")
        .expect("receiver task");
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_bodies_have_read_timeouts() {
    let rig = Rig::start("receiver:\n  header_timeout: 300ms\n  body_timeout: 300ms\n").await;
    let addr = rig.addr();

    // Half a header, then nothing: the receiver closes the connection.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /moysklad/webhook/x HTTP/1.1\r\nHost: x\r\nContent-")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the receiver closed a connection whose headers never came"
    );

    // Headers, then half the body: 408.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "POST /moysklad/webhook/{SECRET}?requestId=slow-body HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"events\": ["
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("the receiver answered a body that never came");
    assert!(read.is_ok());
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_with_413_before_it_is_read() {
    let rig = Rig::start("receiver:\n  max_body: 64KiB\n").await;
    let addr = rig.addr();

    // A Content-Length of 100 MiB and not a byte of the body: refused from the header.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "POST /moysklad/webhook/{SECRET}?requestId=big HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut head))
        .await
        .expect("answered without the body")
        .expect("read");
    assert_eq!(&head, b"HTTP/1.1 413");

    // A chunked body is cut when it passes the limit.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "POST /moysklad/webhook/{SECRET}?requestId=chunked HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
    for _ in 0..5 {
        s.write_all(chunk.as_bytes()).await.expect("write");
    }
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut head))
        .await
        .expect("answered once the limit was passed")
        .expect("read");
    assert_eq!(&head, b"HTTP/1.1 413");

    // A body under the limit is taken.
    let ok = reqwest::Client::new()
        .post(format!(
            "http://{addr}/moysklad/webhook/{SECRET}?requestId=small"
        ))
        .json(&notification("7a1f2c3d-0000-11ef-0a80-000000000001"))
        .send()
        .await
        .expect("answer");
    assert_eq!(ok.status(), 200);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_concurrency_cap_get_503_at_once() {
    let rig = Rig::start("receiver:\n  max_requests: 1\n  body_timeout: 60s\n").await;
    let addr = rig.addr();
    // One request in progress: its body is still coming.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "POST /moysklad/webhook/{SECRET}?requestId=held HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    // Wait until the receiver is handling it (the status request would be shed as well
    // while it is, so look at the connection count through a second raw request instead).
    let mut shed = None;
    for _ in 0..200 {
        let r = reqwest::Client::new()
            .post(format!(
                "http://{addr}/moysklad/webhook/{SECRET}?requestId=second"
            ))
            .json(&notification("7a1f2c3d-0000-11ef-0a80-000000000002"))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("answered");
        if r.status() == 503 {
            shed = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        shed.map(|s| s.as_u16()),
        Some(503),
        "a second request is shed"
    );
    // Once the first one ends, requests are taken again.
    s.write_all(&[b' '; 99]).await.expect("finish the body");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.expect("answer");
    let again = reqwest::Client::new()
        .post(format!(
            "http://{addr}/moysklad/webhook/{SECRET}?requestId=third"
        ))
        .json(&notification("7a1f2c3d-0000-11ef-0a80-000000000003"))
        .send()
        .await
        .expect("answered");
    assert_eq!(again.status(), 200);
    assert!(rig.status().await["receiver"]["requests_shed"]
        .as_u64()
        .is_some_and(|n| n >= 1));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_for_missing_entities_are_bounded_journalled_and_do_not_hold_up_a_real_change() {
    const MAX_INBOX: usize = 100;
    let rig = Rig::start_with(true, &format!("receiver:\n  max_inbox: {MAX_INBOX}\n")).await;
    let d = &rig.daemon;
    let lab = &rig.lab;
    d.start_up().await.expect("start up");
    d.cycle().await.expect("first cycle");
    d.cycle().await.expect("second cycle");
    let addr = rig.addr();

    // 10 000 notifications about customer orders that do not exist.
    let client = reqwest::Client::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000u32 {
        let (client, gate) = (client.clone(), gate.clone());
        tasks.spawn(async move {
            let _p = gate.acquire_owned().await.ok()?;
            let id = format!("0badc0de-0000-11ef-0a80-{i:012x}");
            let r = client
                .post(format!(
                    "http://{addr}/moysklad/webhook/{SECRET}?requestId=junk-{i}"
                ))
                .json(&notification(&id))
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .ok()?;
            Some(r.status().as_u16())
        });
    }
    let (mut ok, mut full) = (0usize, 0usize);
    while let Some(r) = tasks.join_next().await {
        match r.ok().flatten() {
            Some(200) => ok += 1,
            Some(503) => full += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let waiting = d.state().inbox_len().expect("inbox");
    assert!(waiting <= MAX_INBOX, "the inbox is bounded: {waiting}");
    assert!(
        ok <= MAX_INBOX && full >= 10_000 - MAX_INBOX,
        "{ok} taken, {full} refused"
    );

    // A real change: its webhook meets a full inbox (503, МойСклад drops it after its
    // retries); the reconciliation poll finds it once there is room.
    let ms_a1001 = lab
        .ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == "A-1001")
        .expect("A-1001");
    let state = lab.shop.states["assembling"].clone();
    lab.ms
        .update(
            "customerorder",
            ms_a1001["id"].as_str().expect("id"),
            json!({"state": {"meta": {
                "href": format!("{}/entity/customerorder/metadata/states/{state}", lab.ms.base_url()),
                "type": "state", "mediaType": "application/json"}}}),
        )
        .expect("update");
    lab.ms.wait_for_webhooks(Duration::from_secs(10)).await;
    let a1001 = support::order_by_number(lab, "A-1001");
    let mut gone_before = None;
    for _ in 0..6 {
        d.cycle().await.expect("cycle");
        if lab.crm.order(a1001).expect("order")["status"] == "assembling" {
            gone_before = Some(rig.status().await["receiver"]["entities_gone"].clone());
            break;
        }
    }
    let gone_before = gone_before.expect("the real change reached the CRM");
    // At most one inbox's worth of missing entities was fetched before it.
    assert!(
        gone_before
            .as_u64()
            .is_some_and(|n| n as usize <= MAX_INBOX),
        "{gone_before}"
    );

    // The missing entities are counted and journalled, not dropped in silence.
    let status = rig.status().await;
    let r = &status["receiver"];
    assert!(r["entities_gone"].as_u64().is_some_and(|n| n >= 1), "{r}");
    assert!(
        r["inbox_full"].as_u64().is_some_and(|n| n as usize >= full),
        "{r}"
    );
    let gone = status["journal"]
        .as_array()
        .and_then(|j| j.iter().find(|e| e["code"] == "MS_ENTITY_GONE"))
        .cloned()
        .expect("MS_ENTITY_GONE in the journal");
    assert_eq!(gone["level"], "warning");
    assert_eq!(gone["subject"], json!({"entity": "customerorder"}));
    assert!(gone["count"].as_u64().is_some_and(|n| n >= 1), "{gone}");
    rig.stop().await;
}

/// Posts notifications about `n` customer orders that do not exist; returns how many were
/// taken (200).
async fn post_missing(addr: std::net::SocketAddr, n: u32) -> usize {
    let client = reqwest::Client::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, gate) = (client.clone(), gate.clone());
        tasks.spawn(async move {
            let _p = gate.acquire_owned().await.ok()?;
            let id = format!("0badc0de-0000-11ef-0a80-{i:012x}");
            let r = client
                .post(format!(
                    "http://{addr}/moysklad/webhook/{SECRET}?requestId=junk-{i}"
                ))
                .json(&notification(&id))
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .ok()?;
            Some(r.status().as_u16())
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        if r.ok().flatten() == Some(200) {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_change_queued_behind_10000_missing_entities_costs_few_requests() {
    // The default inbox bound: all 10 000 are queued, the real change behind them.
    let rig = Rig::start_with(true, "").await;
    let d = &rig.daemon;
    let lab = &rig.lab;
    d.start_up().await.expect("start up");
    d.cycle().await.expect("first cycle");
    d.cycle().await.expect("second cycle");
    assert_eq!(post_missing(rig.addr(), 10_000).await, 10_000);

    let ms_a1001 = lab
        .ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == "A-1001")
        .expect("A-1001");
    let ms_id = ms_a1001["id"].as_str().expect("id").to_string();
    let state = lab.shop.states["assembling"].clone();
    lab.ms
        .update(
            "customerorder",
            &ms_id,
            json!({"state": {"meta": {
                "href": format!("{}/entity/customerorder/metadata/states/{state}", lab.ms.base_url()),
                "type": "state", "mediaType": "application/json"}}}),
        )
        .expect("update");
    lab.ms.wait_for_webhooks(Duration::from_secs(10)).await;
    let waiting = d.state().inbox().expect("inbox");
    let real = waiting
        .iter()
        .position(|(_, i)| {
            i.work.subject().as_deref() == Some(&format!("moysklad/customerorder/{ms_id}"))
        })
        .expect("the real change's webhook was queued");
    assert!(real >= 10_000, "behind the missing ones (at {real})");

    lab.ms.clear_requests();
    d.drain().await.expect("drain");
    let a1001 = support::order_by_number(lab, "A-1001");
    assert_eq!(lab.crm.order(a1001).expect("order")["status"], "assembling");
    // The missing entities were checked a hundred at a time, not one by one.
    let asked = lab
        .ms
        .requests()
        .iter()
        .filter(|r| r.path.contains("/entity/customerorder"))
        .count();
    eprintln!("{asked} МойСклад requests for 10 000 missing entities and the real change");
    assert!(
        asked <= 300,
        "{asked} МойСклад requests for 10 000 missing entities"
    );
    let status = rig.status().await;
    assert_eq!(status["receiver"]["entities_gone"], 10_000);
    assert_eq!(status["waiting_count"], 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_keeps_the_poll_cursors_and_loses_no_change() {
    const MAX_INBOX: usize = 5;
    let rig = Rig::start_with(false, &format!("receiver:\n  max_inbox: {MAX_INBOX}\n")).await;
    let d = &rig.daemon;
    let lab = &rig.lab;
    d.start_up().await.expect("start up");
    d.cycle().await.expect("first cycle");
    d.cycle().await.expect("second cycle");
    let state_href = |name: &str| {
        format!(
            "{}/entity/customerorder/metadata/states/{}",
            lab.ms.base_url(),
            lab.shop.states[name]
        )
    };
    let ms_order = |number: &str| {
        lab.ms
            .list("customerorder")
            .into_iter()
            .find(|o| o["name"] == number)
            .expect("uploaded")
    };

    // The inbox fills up with work on entities that do not exist.
    assert_eq!(post_missing(rig.addr(), 20).await, MAX_INBOX);
    let crm_cursor = d.state().cursor("crm.history.orders").expect("cursor");
    let ms_watermark = d
        .state()
        .cursor("ms.updated.customerorder")
        .expect("watermark");
    assert!(crm_cursor.is_some() && ms_watermark.is_some());

    // A change on each side meanwhile.
    let a1002 = support::order_by_number(lab, "A-1002");
    lab.crm
        .as_manager(12)
        .set_order_status(a1002, "send-to-delivery")
        .expect("CRM status");
    let a1001 = ms_order("A-1001");
    lab.ms
        .update(
            "customerorder",
            a1001["id"].as_str().expect("id"),
            json!({"state": {"meta": {"href": state_href("assembling"),
                "type": "state", "mediaType": "application/json"}}}),
        )
        .expect("МойСклад state");
    lab.ms.wait_for_webhooks(Duration::from_secs(10)).await;

    // The polls find the inbox full: nothing queued, the cursors stay.
    d.poll_crm().await.expect("CRM poll");
    d.reconcile().await.expect("МойСклад poll");
    assert!(d.state().inbox_len().expect("inbox") <= MAX_INBOX);
    assert_eq!(
        d.state().cursor("crm.history.orders").expect("cursor"),
        crm_cursor
    );
    assert_eq!(
        d.state()
            .cursor("ms.updated.customerorder")
            .expect("watermark"),
        ms_watermark
    );

    // Once there is room, the next passes read the same changes again: both arrive.
    d.drain().await.expect("drain");
    for _ in 0..3 {
        d.cycle().await.expect("cycle");
    }
    assert_eq!(
        ms_order("A-1002")["state"]["meta"]["href"],
        json!(state_href("send-to-delivery"))
    );
    assert_eq!(
        lab.crm
            .order(support::order_by_number(lab, "A-1001"))
            .expect("order")["status"],
        "assembling"
    );
    rig.stop().await;
}
