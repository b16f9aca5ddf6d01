//! Webhook delivery with МойСклад's policy (`md/dictionaries/_webhook.md`): `POST <url>?requestId=…`
//! with the §10.2 body; the receiver must answer 200 or 204 within 1.5 s; otherwise 3 more
//! attempts follow immediately, then the notification is dropped for good. Every attempt of a
//! notification carries the same `requestId`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

/// The User-Agent МойСклад sends with callbacks.
pub const USER_AGENT: &str = "MoySklad webhook touch agent 2.0 (/https://www.moysklad.ru)";

/// What one delivery attempt got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attempt {
    /// The receiver answered with this status.
    Status {
        /// HTTP status.
        status: u16,
    },
    /// No answer within the deadline.
    Timeout,
    /// The connection failed.
    Failed {
        /// The transport error.
        error: String,
    },
}

impl Attempt {
    fn ok(&self) -> bool {
        matches!(self, Attempt::Status { status: 200 | 204 })
    }
}

/// One notification and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The `requestId` query parameter (the same on every attempt).
    pub request_id: String,
    /// The subscriber URL (without `requestId`).
    pub url: String,
    /// The JSON body sent.
    pub body: Value,
    /// Attempts in order.
    pub attempts: Vec<Attempt>,
    /// Whether an attempt got 200/204.
    pub delivered: bool,
}

/// Sends notifications in the background and keeps a log of them.
#[derive(Debug)]
pub struct Deliverer {
    client: reqwest::Client,
    timeout: Duration,
    retries: u32,
    log: Mutex<Vec<WebhookDelivery>>,
    pending: AtomicUsize,
    idle: Notify,
    /// The runtime the emulator was started on: Rust-side changes may come from outside it.
    runtime: tokio::runtime::Handle,
}

impl Deliverer {
    /// A deliverer with this per-attempt deadline and number of extra attempts, sending from
    /// `runtime`.
    pub fn new(timeout: Duration, retries: u32, runtime: tokio::runtime::Handle) -> Deliverer {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Deliverer {
            client,
            timeout,
            retries,
            log: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            runtime,
        }
    }

    /// Queues one notification.
    pub fn send(self: &Arc<Self>, url: String, request_id: String, body: Value) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        self.runtime.spawn(async move {
            let mut attempts = Vec::new();
            let target = match url::Url::parse(&url) {
                Ok(mut u) => {
                    u.query_pairs_mut().append_pair("requestId", &request_id);
                    Some(u)
                }
                Err(_) => None,
            };
            if let Some(target) = target {
                for _ in 0..=me.retries {
                    let res = me
                        .client
                        .post(target.clone())
                        .json(&body)
                        .timeout(me.timeout)
                        .send()
                        .await;
                    let a = match res {
                        Ok(r) => Attempt::Status {
                            status: r.status().as_u16(),
                        },
                        Err(e) if e.is_timeout() => Attempt::Timeout,
                        Err(e) => Attempt::Failed {
                            error: e.to_string(),
                        },
                    };
                    let ok = a.ok();
                    attempts.push(a);
                    if ok {
                        break;
                    }
                }
            } else {
                attempts.push(Attempt::Failed {
                    error: "invalid url".into(),
                });
            }
            let delivered = attempts.last().is_some_and(Attempt::ok);
            me.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(WebhookDelivery {
                    request_id,
                    url,
                    body,
                    attempts,
                    delivered,
                });
            if me.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                me.idle.notify_waiters();
            }
        });
    }

    /// Every finished notification so far, in completion order.
    pub fn log(&self) -> Vec<WebhookDelivery> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until no notification is in progress, at most `timeout`. Returns whether idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }
}
