//! Bulk creates: creates of one МойСклад entity type from plans applied at the same time,
//! gathered into one `POST entity/<type>` of an array (a loader for writes).
//!
//! # How a batch forms
//!
//! The daemon applies the plans of several waiting orders at once (one plan per event, as
//! ever). A create of a base entity that takes a `syncId` (`customerorder`, `counterparty`, …)
//! does not send its own request: it joins the queue of its type. The first create in an
//! empty queue leads: it waits until every plan being applied is waiting here (in a queue or
//! for a key another plan holds), or [`WINDOW`] has passed, or the queue holds [`MAX`]
//! creates; then it sends the queue as one POST and hands each create its own element of the
//! answer. One create alone is sent as an object, as without batching.
//!
//! * **Per-element errors** (МойСклад answers 200 with `{"errors": […]}` in the place of a
//!   refused element) go back to their own create only; the others are confirmed.
//! * **A failed request** (5xx, 429 after the client's waits, a dropped connection) fails
//!   every create of the batch with that error: each then behaves as a lone create would
//!   (a lost answer makes it look its key up before repeating).
//! * **Duplicates**: creates with the same `syncId` in one batch are sent once and share the
//!   answer; batches of one type are sent one after another, and a repeated `syncId`
//!   answers with the entity it made. Two creates with the same idempotency key never run at
//!   the same time (see [`Batcher::hold_key`]): the second sees what the first recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use crate::clients::moysklad::{ApiError, MoyskladClient, MoyskladError};

/// How long the first create of a batch waits for others.
pub const WINDOW: Duration = Duration::from_secs(2);

/// The most creates in one POST (МойСклад takes up to 1 000 elements).
pub const MAX: usize = 1000;

/// МойСклад codes of element errors that may go away by themselves (a parallel change, an
/// unexpected error, the time limit of a bulk request).
const TRANSIENT_CODES: &[i64] = &[1065, 1083, 1088, 1999];

/// What a create in a batch gets back.
pub type Answer = Result<Value, BatchError>;

/// A create in a batch that did not succeed.
#[derive(Debug, Clone)]
pub enum BatchError {
    /// The whole request failed: every create of the batch gets it.
    Request(Arc<MoyskladError>),
    /// МойСклад refused this element (the others may have been created).
    Element(Arc<MoyskladError>),
}

impl BatchError {
    /// The client error inside.
    pub fn error(&self) -> &Arc<MoyskladError> {
        match self {
            BatchError::Request(e) | BatchError::Element(e) => e,
        }
    }
}

struct Pending {
    /// The element of a bulk POST.
    body: Value,
    /// The request made when it goes alone: `POST entity/<type>` of the object, or for an
    /// update `PUT entity/<type>/<id>` without its `meta`.
    alone: (reqwest::Method, String, Value),
    tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Inner {
    /// Plans being applied now.
    active: usize,
    /// Plans waiting here (in a queue, or for a key).
    waiting: usize,
    /// Queues by path (`entity/counterparty`).
    queues: HashMap<String, Vec<Pending>>,
    /// Keys of creates in progress.
    keys: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// Gathers concurrent creates of one type into bulk POSTs (see the module docs).
#[derive(Default)]
pub struct Batcher {
    inner: Mutex<Inner>,
    changed: Notify,
    /// One batch of a path at a time.
    sending: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Requests sent and elements in them (metrics, the bench).
    sent: std::sync::atomic::AtomicU64,
    elements: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batcher")
    }
}

/// A plan being applied (dropped when it ends).
pub struct Active<'a>(Option<&'a Batcher>);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.with(|i| i.active = i.active.saturating_sub(1));
            b.changed.notify_waiters();
        }
    }
}

/// Holds an idempotency key while its create runs.
pub struct KeyHold {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Counts a plan as waiting here while it lives (not a plan of background work, which is not
/// counted as being applied either: see [`Batcher::active`]).
struct Waiting<'a>(Option<&'a Batcher>);

impl<'a> Waiting<'a> {
    fn new(b: &'a Batcher) -> Self {
        if crate::clients::is_background() {
            return Waiting(None);
        }
        b.with(|i| i.waiting += 1);
        b.changed.notify_waiters();
        Waiting(Some(b))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.with(|i| i.waiting = i.waiting.saturating_sub(1));
        }
    }
}

impl Batcher {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts a plan as being applied until the guard drops — unless it is background work
    /// (a stock pass in its own lane, see [`crate::clients::background`]): a batch waits for
    /// the plans of orders applied side by side, never for a pass's uploads (an order's
    /// create would wait for them until [`WINDOW`]).
    pub fn active(&self) -> Active<'_> {
        if crate::clients::is_background() {
            return Active(None);
        }
        self.with(|i| i.active += 1);
        Active(Some(self))
    }

    /// Whether the batch of `path` goes now: it is full, or every plan being applied waits
    /// here.
    fn ready(&self, path: &str) -> bool {
        self.with(|i| {
            let n = i.queues.get(path).map_or(0, Vec::len);
            n >= MAX || i.waiting >= i.active
        })
    }

    /// Bulk requests sent and the creates they carried.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.sent.load(Relaxed), self.elements.load(Relaxed))
    }

    /// Waits until no other create with `key` runs, then holds it.
    pub async fn hold_key(&self, key: &str) -> KeyHold {
        let lock = self.with(|i| i.keys.entry(key.to_string()).or_default().clone());
        let guard = match lock.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                let _w = Waiting::new(self);
                lock.clone().lock_owned().await
            }
        };
        // Forget the locks of keys nobody holds or waits for (only the map has them).
        self.with(|i| i.keys.retain(|_, l| Arc::strong_count(l) > 1));
        KeyHold { _guard: guard }
    }

    /// Creates `body` at `path` (`entity/<type>`), alone or in a batch with other creates.
    pub async fn create(&self, ms: &MoyskladClient, path: &str, body: Value) -> Answer {
        let alone = (reqwest::Method::POST, path.to_string(), body.clone());
        self.submit(ms, path, body, alone).await
    }

    /// Updates the entity `id` of `path` (`entity/<type>`) with `body`: alone a `PUT`, in a
    /// batch an element with the entity's `meta` (МойСклад updates the elements that carry
    /// one).
    pub async fn update(&self, ms: &MoyskladClient, path: &str, id: &str, body: Value) -> Answer {
        let entity = path.trim_start_matches("entity/");
        let mut element = body.clone();
        if let Some(m) = element.as_object_mut() {
            // `meta` itself, not the `{"meta": …}` a reference is.
            m.insert("meta".into(), ms.meta(entity, id)["meta"].clone());
        }
        let alone = (reqwest::Method::PUT, format!("{path}/{id}"), body);
        self.submit(ms, path, element, alone).await
    }

    async fn submit(
        &self,
        ms: &MoyskladClient,
        path: &str,
        body: Value,
        alone: (reqwest::Method, String, Value),
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let lead = self.with(|i| {
            let q = i.queues.entry(path.to_string()).or_default();
            q.push(Pending { body, alone, tx });
            q.len() == 1
        });
        let waiting = Waiting::new(self);
        if lead {
            self.lead(ms, path).await;
        }
        drop(waiting);
        match rx.await {
            Ok(a) => a,
            Err(_) => Err(BatchError::Request(Arc::new(
                MoyskladError::InvalidRequest("the batch of this create was abandoned".into()),
            ))),
        }
    }

    /// Waits for the batch to fill, then sends it.
    async fn lead(&self, ms: &MoyskladClient, path: &str) {
        let start = tokio::time::Instant::now();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let full = self.ready(path);
            let left = WINDOW.saturating_sub(start.elapsed());
            if full || left.is_zero() {
                break;
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
        let send_lock = {
            let mut s = self.sending.lock().unwrap_or_else(|p| p.into_inner());
            s.entry(path.to_string()).or_default().clone()
        };
        let _one = send_lock.lock().await;
        let batch: Vec<Pending> = self.with(|i| {
            let q = i.queues.entry(path.to_string()).or_default();
            let n = q.len().min(MAX);
            q.drain(..n).collect()
        });
        // Whoever came after the batch was taken leads the next one.
        let next_lead = self.with(|i| i.queues.get(path).is_some_and(|q| !q.is_empty()));
        if batch.is_empty() {
            return;
        }
        self.send(ms, path, batch).await;
        if next_lead {
            self.changed.notify_waiters();
            Box::pin(self.lead(ms, path)).await;
        }
    }

    async fn send(&self, ms: &MoyskladClient, path: &str, batch: Vec<Pending>) {
        use std::sync::atomic::Ordering::Relaxed;
        // Creates with one syncId go once.
        let mut bodies: Vec<Value> = Vec::new();
        let mut slot_of: Vec<usize> = Vec::with_capacity(batch.len());
        let mut by_sync: HashMap<String, usize> = HashMap::new();
        for p in &batch {
            // Updates (with `meta`) all go; creates with one syncId go once.
            let sync = p
                .body
                .get("syncId")
                .and_then(Value::as_str)
                .filter(|_| p.body.get("meta").is_none());
            let slot = match sync.and_then(|s| by_sync.get(s)) {
                Some(&slot) => slot,
                None => {
                    bodies.push(p.body.clone());
                    let slot = bodies.len() - 1;
                    if let Some(s) = sync {
                        by_sync.insert(s.to_string(), slot);
                    }
                    slot
                }
            };
            slot_of.push(slot);
        }
        self.sent.fetch_add(1, Relaxed);
        self.elements.fetch_add(bodies.len() as u64, Relaxed);
        let answers: Vec<Answer> = if let ([p], 1) = (batch.as_slice(), bodies.len()) {
            let (method, alone_path, body) = &p.alone;
            let one = ms
                .request(method.clone(), alone_path, &[], Some(body))
                .await;
            vec![match one {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(BatchError::Request(Arc::new(empty_answer(path)))),
                Err(e) => Err(BatchError::Request(Arc::new(e))),
            }]
        } else {
            tracing::debug!(%path, creates = batch.len(), elements = bodies.len(), "bulk create");
            let entity = path.trim_start_matches("entity/");
            match ms.bulk_upsert(entity, &bodies).await {
                Ok(rows) => rows
                    .into_iter()
                    .map(|r| r.map_err(|errors| element_error(path, errors)))
                    .collect(),
                Err(e) => {
                    let e = Arc::new(e);
                    bodies
                        .iter()
                        .map(|_| Err(BatchError::Request(e.clone())))
                        .collect()
                }
            }
        };
        for (p, slot) in batch.into_iter().zip(slot_of) {
            let a = answers
                .get(slot)
                .cloned()
                .unwrap_or_else(|| Err(BatchError::Request(Arc::new(empty_answer(path)))));
            let _ = p.tx.send(a);
        }
    }
}

fn empty_answer(path: &str) -> MoyskladError {
    MoyskladError::Api {
        method: "POST".into(),
        path: path.to_string(),
        status: 200,
        errors: vec![ApiError {
            error: "no answer for this element of the bulk create".into(),
            ..ApiError::default()
        }],
    }
}

/// An element refused inside a bulk answer (the request itself answered 200). It is reported
/// as the status a create of that element alone gets for such errors: 412 (validation), or
/// 500 for errors that may go away by themselves.
fn element_error(path: &str, errors: Vec<ApiError>) -> BatchError {
    let transient = errors
        .iter()
        .any(|e| e.code.is_some_and(|c| TRANSIENT_CODES.contains(&c)));
    BatchError::Element(Arc::new(MoyskladError::Api {
        method: "POST".into(),
        path: path.to_string(),
        status: if transient { 500 } else { 412 },
        errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stock pass's plan (background work) being applied is not waited for: an order's
    /// create, the only other plan, goes as soon as it waits here — not after [`WINDOW`].
    #[tokio::test]
    async fn a_batch_does_not_wait_for_plans_of_background_work() {
        let b = Batcher::default();
        let order = b.active();
        // The pass's plan, and its own create waiting here (neither counts).
        let (pass, pass_waits) =
            crate::clients::background(async { (b.active(), Waiting::new(&b)) }).await;
        assert!(
            !b.ready("entity/customerorder"),
            "the order does not wait yet"
        );
        let order_waits = Waiting::new(&b);
        assert!(
            b.ready("entity/customerorder"),
            "the order's create waits for the stock pass being applied"
        );
        // Orders side by side are still waited for.
        let other = b.active();
        assert!(!b.ready("entity/customerorder"));
        drop(other);
        assert!(b.ready("entity/customerorder"));
        drop((order_waits, pass_waits, pass, order));
    }
}
