//! Time limits of both clients against a loopback server that accepts requests and never
//! answers some of them: a call ends within its configured limit (retries included, so a hung
//! server sees one request, not one per retry), a write that ran out of time is "outcome
//! unknown" (the apply layer looks the create up by its key before repeating it), and other
//! calls of the same client go on meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use skladsync_runner::apply::{ApplyError, FailureClass};
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::clients::retailcrm::{self, RetailcrmClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback HTTP server: requests that mention `hang` (path or body) are read and never
/// answered
/// (the connection stays open); others get `200 {"success": true, "id": 1, …}`.
struct Server {
    base: String,
    hung: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hung = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (h, a) = (hung.clone(), answered.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (h, a) = (h.clone(), a.clone());
            tokio::spawn(async move {
                loop {
                    // One request: the head, then the body by Content-Length.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&buf).to_string();
                    if request.contains("hang") {
                        h.fetch_add(1, Ordering::SeqCst);
                        // Hold the connection, answer nothing, until the client gives up.
                        let _ = sock.read(&mut chunk).await;
                        return;
                    }
                    a.fetch_add(1, Ordering::SeqCst);
                    let body = json!({"success": true, "id": 1, "name": "ok",
                                      "meta": {"href": "x", "type": "counterparty"}})
                    .to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server {
        base: format!("http://{addr}"),
        hung,
        answered,
    }
}

/// A generous bound: a call limited to 1 s must end long before this (without the call-wide
/// limit, four attempts of 1 s and their backoff would still fit, so the request count is
/// what tells the difference).
const BOUND: Duration = Duration::from_secs(10);

fn ms_client(base: &str) -> MoyskladClient {
    MoyskladClient::new(
        ClientConfig::new(Auth::bearer("token"))
            .base_url(format!("{base}/api/remap/1.2"))
            .timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_secs(1)),
    )
    .expect("client")
}

fn crm_client(base: &str) -> RetailcrmClient {
    RetailcrmClient::new(
        retailcrm::ClientConfig::new(base, "key")
            .expect("url")
            .with_timeout(Duration::from_secs(1))
            .with_connect_timeout(Duration::from_secs(1)),
    )
    .expect("client")
}

#[tokio::test]
async fn a_hung_moysklad_read_ends_within_the_limit_after_one_request() {
    let srv = server().await;
    let c = ms_client(&srv.base);
    let err = tokio::time::timeout(BOUND, c.get("counterparty", "hang", &[]))
        .await
        .expect("the call ends within its limit")
        .expect_err("nothing answered");
    assert!(err.is_timeout(), "{err}");
    // The retries of a GET (4 attempts by default) fit in the call's limit or not at all.
    assert_eq!(srv.hung.load(Ordering::SeqCst), 1, "{err}");
    let apply = ApplyError::from(err);
    assert_eq!(apply.class(), FailureClass::Transient);
}

#[tokio::test]
async fn a_moysklad_create_that_ran_out_of_time_is_outcome_unknown() {
    let srv = server().await;
    let c = ms_client(&srv.base);
    // `hang` in the entity path: the server reads the body and never answers.
    let err = tokio::time::timeout(
        BOUND,
        c.request(
            reqwest::Method::POST,
            "entity/hang",
            &[],
            Some(&json!({"name": "ООО Ромашка"})),
        ),
    )
    .await
    .expect("the call ends within its limit")
    .expect_err("nothing answered");
    assert!(err.is_timeout(), "{err}");
    assert!(err.is_no_response(), "a sent write that timed out: {err:?}");
    assert_eq!(srv.hung.load(Ordering::SeqCst), 1);
    let apply = ApplyError::from(err);
    assert!(apply.outcome_unknown());
    assert_eq!(apply.class(), FailureClass::Transient);
}

#[tokio::test]
async fn other_moysklad_calls_go_on_while_one_hangs() {
    let srv = server().await;
    let c = ms_client(&srv.base);
    let hung = {
        let c = c.clone();
        tokio::spawn(async move { c.get("counterparty", "hang", &[]).await })
    };
    // Wait until the hung request is at the server, then do other work.
    for _ in 0..200 {
        if srv.hung.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(srv.hung.load(Ordering::SeqCst), 1);
    let other = c.get("counterparty", "fine", &[]).await.expect("answered");
    assert_eq!(other["name"], "ok");
    assert!(!hung.is_finished(), "the hung call was still waiting");
    let err = tokio::time::timeout(BOUND, hung)
        .await
        .expect("ends")
        .expect("task")
        .expect_err("hung");
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn a_hung_crm_read_ends_within_the_limit_after_one_request() {
    let srv = server().await;
    let c = crm_client(&srv.base);
    let err = tokio::time::timeout(BOUND, c.get_raw("reference/hang", &[]))
        .await
        .expect("the call ends within its limit")
        .expect_err("nothing answered");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(srv.hung.load(Ordering::SeqCst), 1, "{err}");
    assert_eq!(ApplyError::from(err).class(), FailureClass::Transient);
    // The same client answers other calls.
    let ok = c.get_raw("reference/sites", &[]).await.expect("answered");
    assert_eq!(ok["success"], true);
    assert_eq!(srv.answered.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_crm_create_that_ran_out_of_time_is_outcome_unknown() {
    let srv = server().await;
    // `hang` as the site: the request body mentions it.
    let c = crm_client(&srv.base);
    let err = tokio::time::timeout(
        BOUND,
        c.customer_create(
            &json!({"externalId": "c-1", "firstName": "Анна"}),
            Some("hang"),
        ),
    )
    .await
    .expect("the call ends within its limit")
    .expect_err("nothing answered");
    assert!(err.is_timeout(), "{err}");
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert_eq!(srv.hung.load(Ordering::SeqCst), 1);
    let apply = ApplyError::from(err);
    assert!(apply.outcome_unknown());
    assert_eq!(apply.class(), FailureClass::Transient);
}
