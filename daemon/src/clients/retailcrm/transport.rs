//! One HTTP exchange with retailCRM: pacing, key header, form/query encoding, retries and the
//! response envelope.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use skladsync_engine::Value as EngineValue;
use tokio::time::Instant;

use super::config::ClientConfig;
use super::error::{ApiError, Error};

/// Whether repeating a request after an unknown outcome is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Reads, edits, absolute stock uploads: repeating gives the same final state.
    Idempotent,
    /// Creates, deletes, tasks: repeating may duplicate.
    NonIdempotent,
}

/// A request to send: path segments under the account root, query pairs, optional form.
#[derive(Debug)]
pub(crate) struct Call {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub form: Option<Vec<(String, String)>>,
    pub safety: Safety,
}

impl Call {
    /// A GET under `/api/v5/`.
    pub fn get(segments: &[&str]) -> Self {
        Self {
            method: Method::GET,
            segments: v5(segments),
            query: Vec::new(),
            form: None,
            safety: Safety::Idempotent,
        }
    }

    /// A form POST under `/api/v5/`.
    pub fn post(segments: &[&str], safety: Safety) -> Self {
        Self {
            method: Method::POST,
            segments: v5(segments),
            query: Vec::new(),
            form: Some(Vec::new()),
            safety,
        }
    }

    /// Adds a query parameter.
    pub fn param(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }

    /// Adds `filter[...]` parameters from a JSON object (see [`flatten_query`]).
    pub fn filter(mut self, filter: &Value) -> Result<Self, Error> {
        match filter {
            Value::Null => {}
            Value::Object(map) if map.is_empty() => {}
            Value::Object(_) => flatten_query("filter", filter, &mut self.query),
            other => {
                return Err(Error::InvalidInput(format!(
                    "a filter must be a JSON object, got {other}"
                )))
            }
        }
        Ok(self)
    }

    /// Adds a plain form field.
    pub fn field(mut self, key: &str, value: impl Into<String>) -> Self {
        if let Some(form) = self.form.as_mut() {
            form.push((key.to_string(), value.into()));
        }
        self
    }

    /// Adds a form field whose value is the JSON text of `value`.
    pub fn json_field<T: serde::Serialize + ?Sized>(
        self,
        key: &str,
        value: &T,
    ) -> Result<Self, Error> {
        let text = serde_json::to_string(value)
            .map_err(|e| Error::InvalidInput(format!("cannot encode `{key}`: {e}")))?;
        Ok(self.field(key, text))
    }

    /// Adds an optional plain form field.
    pub fn opt_field(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    /// The path as shown in errors and logs.
    pub fn path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

fn v5(segments: &[&str]) -> Vec<String> {
    let mut out = vec!["api".to_string(), "v5".to_string()];
    out.extend(segments.iter().map(|s| s.to_string()));
    out
}

/// Flattens a JSON value into bracketed query pairs, as retailCRM reads them:
/// `{"ids":[1,2],"customFields":{"nps":{"min":5}},"shipped":true}` under `filter` gives
/// `filter[ids][]=1`, `filter[ids][]=2`, `filter[customFields][nps][min]=5`,
/// `filter[shipped]=1` (booleans are `1`/`0`). `null` values are skipped.
pub fn flatten_query(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((prefix.to_string(), if *b { "1" } else { "0" }.into())),
        Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Array(items) => {
            for item in items {
                flatten_query(&format!("{prefix}[]"), item, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten_query(&format!("{prefix}[{k}]"), v, out);
            }
        }
    }
}

/// A shared pacing gate: requests spaced at least `1 s / n` apart (no bursts), and never more
/// than `n` of them that may land in one second where retailCRM counts them.
///
/// retailCRM counts requests per key in a second where they arrive, and requests sent evenly
/// `1 s / n` apart arrive unevenly (one delayed request and `n + 1` of them land in one
/// second). Where a request is counted lies between the moment it is sent and the moment its
/// answer is in, so the gate counts, when a request wants to go, the requests still under way
/// and those answered within the last second: only when fewer than `n` are can it be sent.
/// Any `n + 1` requests then arrive at least a second apart (the last one sent found one of
/// the others answered a second before), whatever the network and the server's queue did:
/// retailCRM never refuses one for the rate, and the pace is `n` per second plus a request's
/// time per `n` requests (a fixed margin of 10 % used to cost a tenth of the budget and still
/// let a request delayed more than the margin through to a refusal).
#[derive(Debug)]
pub(crate) struct Pacer {
    per_second: usize,
    interval: Duration,
    state: Mutex<PacerState>,
    /// [`BACKGROUND_AGE`] (shorter in tests).
    background_age: Duration,
}

#[derive(Debug, Default)]
struct PacerState {
    /// The earliest slot of the next request (spacing; slots are handed out in turn).
    next: Option<Instant>,
    /// Requests sent and not answered yet.
    in_flight: usize,
    /// When the requests answered within the last second were answered, oldest first.
    answered: std::collections::VecDeque<Instant>,
    /// Background requests waiting longer than [`BACKGROUND_AGE`]: the places they need are
    /// kept for them.
    aged: usize,
}

/// Background work (a stock pass, see [`crate::clients::background`]) leaves `n / 5` of the
/// `n` requests a second to the rest (2 of retailCRM's 10): an order's history read and
/// write-back get a place at once while a pass reads offers and uploads stock.
const BACKGROUND_RESERVE_DIV: usize = 5;

/// A background request that has waited this long no longer leaves the reserve, and the rest
/// leave it a place: orders that keep retailCRM busy delay a stock pass's requests by about
/// this much at most, never for good.
const BACKGROUND_AGE: Duration = Duration::from_secs(3);

/// Counts an aged background request (see [`BACKGROUND_AGE`]) while it waits.
struct AgedWaiting<'a>(&'a Pacer);

impl<'a> AgedWaiting<'a> {
    fn new(pacer: &'a Pacer) -> Self {
        pacer.lock().aged += 1;
        AgedWaiting(pacer)
    }
}

impl Drop for AgedWaiting<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.aged = st.aged.saturating_sub(1);
    }
}

/// How long a request waits, at most, before looking again at requests under way (they free
/// their place when answered).
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(10);

/// A request's place in the gate: the request is under way until this is dropped (after the
/// whole answer is read, or the request was given up).
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    pacer: &'a Pacer,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut st = self.pacer.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        st.answered.push_back(Instant::now());
    }
}

impl Pacer {
    pub fn new(per_second: u32) -> Self {
        let n = per_second.max(1);
        Self {
            per_second: n as usize,
            interval: Duration::from_secs(1) / n,
            state: Mutex::new(PacerState::default()),
            background_age: BACKGROUND_AGE,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        // A poisoned lock only means another task panicked mid-update of plain counters and
        // instants; they are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this request's slot; the request counts as under way until the permit is
    /// dropped.
    pub async fn acquire(&self) -> Permit<'_> {
        // Spacing: slots in turn, `1 s / n` apart.
        let wait = {
            let mut st = self.lock();
            let now = Instant::now();
            let slot = match st.next {
                Some(t) if t > now => t,
                _ => now,
            };
            st.next = Some(slot + self.interval);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // The second: fewer than `n` under way or answered within the last second (background
        // work: fewer than `n` less a reserve kept for the rest, until it has waited
        // BACKGROUND_AGE; then the rest leave it a place).
        let background = crate::clients::is_background();
        let since = Instant::now();
        let mut aged: Option<AgedWaiting<'_>> = None;
        loop {
            if background && aged.is_none() && since.elapsed() >= self.background_age {
                aged = Some(AgedWaiting::new(self));
            }
            let limit = match (background, aged.is_some()) {
                (true, false) => self.per_second - self.per_second / BACKGROUND_RESERVE_DIV,
                _ => self.per_second,
            };
            match self.try_take(limit, aged.is_some()) {
                Ok(permit) => return permit,
                Err(wait) => {
                    // An unaged background request looks again by its ageing at the latest.
                    let wait = match background && aged.is_none() {
                        true => wait.min(self.background_age.saturating_sub(since.elapsed())),
                        false => wait,
                    };
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await
                }
            }
        }
    }

    /// A permit if fewer than `limit` requests are under way or were answered within the last
    /// second, less the places kept for aged background requests (unless this is one); else
    /// how long to wait before looking again.
    fn try_take(&self, limit: usize, aged: bool) -> Result<Permit<'_>, Duration> {
        let second = Duration::from_secs(1);
        let mut st = self.lock();
        let now = Instant::now();
        while st
            .answered
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= second)
        {
            st.answered.pop_front();
        }
        let kept = match aged {
            true => st.aged.saturating_sub(1),
            false => st.aged,
        };
        if st.in_flight + st.answered.len() + kept < limit.max(1) {
            st.in_flight += 1;
            return Ok(Permit { pacer: self });
        }
        Err(match st.answered.front() {
            Some(t) => (*t + second)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
            None => IN_FLIGHT_RECHECK,
        })
    }
}

/// The HTTP side of the client.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    pub config: ClientConfig,
    pacer: Option<Pacer>,
}

/// Reads an answer: (transport, method, path, HTTP status, body).
pub(crate) type Reader<T> = fn(&Transport, &str, &str, u16, &[u8]) -> Result<T, Error>;

enum Outcome<T = Value> {
    Done(Result<T, Error>),
    /// Worth another try; the failure is the answer if there is no time left for one.
    Retry(Error),
}

/// The shortest time an attempt is given (a retry starts only when it [`fits`]).
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// Whether waiting `wait` and then making another attempt fits before `deadline`.
fn fits(deadline: Instant, wait: Duration) -> bool {
    Instant::now() + wait + MIN_ATTEMPT < deadline
}

impl Transport {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        if config.timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be more than zero".into()));
        }
        // Shared by every client with the same settings (the API key goes with each request).
        let key = format!(
            "retailcrm {:?} {:?}",
            config.timeout, config.connect_timeout
        );
        let http = crate::clients::shared_http(key, || {
            reqwest::Client::builder()
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .gzip(true)
                .build()
        })
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let pacer = config.requests_per_second.map(|n| Pacer::new(n.get()));
        Ok(Self {
            http,
            config,
            pacer,
        })
    }

    /// Sends `call`, retrying as [`RetryPolicy`](super::RetryPolicy) says, and returns the
    /// JSON body of a successful envelope.
    pub async fn execute(&self, call: &Call) -> Result<Value, Error> {
        self.execute_with(call, Self::envelope).await
    }

    /// [`Transport::execute`], the answer read by `read` (the envelope's checks included).
    pub(crate) async fn execute_with<T>(&self, call: &Call, read: Reader<T>) -> Result<T, Error> {
        let mut url = self.config.base_url.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| Error::Config("base URL cannot be a base".into()))?;
            segs.pop_if_empty();
            for s in &call.segments {
                segs.push(s);
            }
        }
        let path = call.path();
        let retry = &self.config.retry;
        let mut attempt: u32 = 0;
        // The call's time limit starts with its first paced slot; retries, their backoff and
        // their slots must fit in it, else the last failure is the answer.
        let mut deadline: Option<Instant> = None;
        let mut pending: Option<Error> = None;
        loop {
            attempt += 1;
            let permit = match &self.pacer {
                Some(p) => match (deadline, pending.take()) {
                    (Some(d), Some(failure)) => match tokio::time::timeout_at(d, p.acquire()).await
                    {
                        Ok(permit) => Some(permit),
                        Err(_) => return Err(failure),
                    },
                    _ => Some(p.acquire().await),
                },
                None => None,
            };
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.config.timeout);
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = self
                .try_once(call, &url, &path, attempt, left.max(MIN_ATTEMPT), read)
                .await;
            // Answered (or given up): the request leaves the gate's count of those under way.
            drop(permit);
            match outcome {
                Outcome::Done(result) => return result,
                Outcome::Retry(failure) => {
                    let wait = jitter(retry.delay(attempt));
                    if !fits(deadline, wait) {
                        tracing::debug!(
                            method = call.method.as_str(),
                            path,
                            attempt,
                            "retailCRM call out of time; not retrying"
                        );
                        return Err(failure);
                    }
                    tokio::time::sleep(wait).await;
                    pending = Some(failure);
                }
            }
        }
    }

    async fn try_once<T>(
        &self,
        call: &Call,
        url: &url::Url,
        path: &str,
        attempt: u32,
        time_left: Duration,
        read: Reader<T>,
    ) -> Outcome<T> {
        let retry = &self.config.retry;
        let method = call.method.as_str();
        let mut req = self
            .http
            .request(call.method.clone(), url.clone())
            .timeout(time_left)
            .header("X-API-KEY", self.config.api_key.expose());
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(form) = &call.form {
            req = req.form(form);
        }
        let idempotent = call.safety == Safety::Idempotent;
        let net_failure = |e: reqwest::Error| -> Outcome<T> {
            // A connect timeout is a connect error (nothing was sent); a timeout after that
            // leaves the outcome of a write unknown.
            let connect = e.is_connect();
            let retry_it = (connect || idempotent) && attempt < retry.max_attempts.max(1);
            if retry_it {
                tracing::debug!(method, path, attempt, error = %e, "retailCRM network error, retrying");
            }
            let failure = if connect || call.method == Method::GET {
                Error::Network {
                    method: method.to_string(),
                    path: path.to_string(),
                    attempts: attempt,
                    source: e,
                }
            } else {
                Error::NoResponse {
                    method: method.to_string(),
                    path: path.to_string(),
                    source: e,
                }
            };
            if retry_it {
                Outcome::Retry(failure)
            } else {
                Outcome::Done(Err(failure))
            }
        };
        let endpoint = crate::clients::retailcrm_endpoint(&call.segments);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.config.observer.seen(&endpoint, None);
                return net_failure(e);
            }
        };
        let status = resp.status().as_u16();
        self.config.observer.seen(&endpoint, Some(status));
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return net_failure(e),
        };
        tracing::debug!(method, path, status, attempt, "retailCRM response");
        let answer = read(self, method, path, status, &body);
        let again = (matches!(status, 429 | 503) && attempt < retry.rate_limit_attempts.max(1))
            || (status >= 500 && idempotent && attempt < retry.max_attempts.max(1));
        match answer {
            Err(failure) if again => {
                tracing::debug!(
                    method,
                    path,
                    status,
                    attempt,
                    "retailCRM busy or failing, backing off"
                );
                Outcome::Retry(failure)
            }
            answer => Outcome::Done(answer),
        }
    }

    /// The body of a successful envelope read straight into engine values; anything else is
    /// the error [`Transport::envelope`] makes of it (read again as JSON: errors are rare).
    pub(crate) fn envelope_values(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
    ) -> Result<EngineValue, Error> {
        if status < 400 {
            if let Ok(v) = serde_json::from_slice::<EngineValue>(body) {
                if v.get_ref("success").and_then(EngineValue::as_bool) == Some(true) {
                    return Ok(v);
                }
            }
        }
        match self.envelope(method, path, status, body) {
            Err(e) => Err(e),
            // Both read the same text the same way (engine/tests/deser.rs): not reached.
            Ok(_) => Err(Error::Decode {
                method: method.to_string(),
                path: path.to_string(),
                detail: "the answer does not read as engine values".into(),
            }),
        }
    }

    pub(crate) fn envelope(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
    ) -> Result<Value, Error> {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let success = parsed
            .as_ref()
            .and_then(|v| v.get("success"))
            .and_then(Value::as_bool);
        match (parsed, success) {
            (Some(v), Some(true)) if status < 400 => Ok(v),
            (Some(v), Some(_)) => match ApiError::from_body(v) {
                Some(api) => Err(Error::Api {
                    method: method.to_string(),
                    path: path.to_string(),
                    status,
                    api: Box::new(api),
                }),
                None => Err(Error::Decode {
                    method: method.to_string(),
                    path: path.to_string(),
                    detail: "envelope is not an object".into(),
                }),
            },
            _ if status >= 400 => Err(Error::Http {
                method: method.to_string(),
                path: path.to_string(),
                status,
                body: snippet(body),
            }),
            _ => Err(Error::Decode {
                method: method.to_string(),
                path: path.to_string(),
                detail: format!(
                    "HTTP {status} without a `success` envelope: {}",
                    snippet(body)
                ),
            }),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// Between half and all of `base`, so clients that were refused together do not retry
/// together.
fn jitter(base: Duration) -> Duration {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    let r = h.finish();
    let half = base / 2;
    let extra_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let extra = if extra_nanos == 0 {
        0
    } else {
        r % (extra_nanos + 1)
    };
    half + Duration::from_nanos(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_read_into_engine_values_fail_as_json_ones_do() {
        let t = Transport::new(ClientConfig::new("http://127.0.0.1:1", "k").expect("url"))
            .expect("transport");
        let cases: &[(u16, &str)] = &[
            (
                200,
                r#"{"success": true, "order": {"id": 7, "summ": 19.99, "items": [{"a": 1}, {"a": 2}]}}"#,
            ),
            (
                200,
                r#"{"success": true, "success": true, "x": 18446744073709551616}"#,
            ),
            (200, r#"{"success": false, "errorMsg": "Not found"}"#),
            (200, r#"{"success": "yes"}"#),
            (200, r#"{"order": {}}"#),
            (200, r#"{"success": true, "order": {"id": 7"#),
            (200, r#"[1, 2]"#),
            (200, ""),
            (200, "<html>busy</html>"),
            (
                200,
                &format!(
                    "{{\"success\": true, \"x\": {}1{}}}",
                    "[".repeat(200),
                    "]".repeat(200)
                ),
            ),
            (
                400,
                r#"{"success": false, "errorMsg": "Errors", "errors": {"customer": "bad"}}"#,
            ),
            (400, r#"{"success": true}"#),
            (404, r#"{"success": false, "errorMsg": "Not found"}"#),
            (500, "Internal error"),
            (503, ""),
        ];
        for (status, body) in cases {
            let json = t.envelope("GET", "orders/7", *status, body.as_bytes());
            let values = t.envelope_values("GET", "orders/7", *status, body.as_bytes());
            match (json, values) {
                (Ok(a), Ok(b)) => assert_eq!(
                    skladsync_engine::Value::from_json(&a).to_json(),
                    b.to_json(),
                    "{body}"
                ),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{body}"),
                (a, b) => panic!("{status} {body}: {a:?} as JSON, {b:?} as engine values"),
            }
        }
    }

    #[test]
    fn filters_flatten_to_brackets() {
        let mut out = Vec::new();
        flatten_query(
            "filter",
            &json!({"ids": [1, 2], "customFields": {"nps": {"min": 5}}, "shipped": true, "x": null}),
            &mut out,
        );
        let got: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "filter[ids][]=1",
                "filter[ids][]=2",
                "filter[customFields][nps][min]=5",
                "filter[shipped]=1"
            ]
        );
    }

    #[tokio::test]
    async fn the_pacer_spaces_requests_by_the_interval() {
        // A lower bound only: sleeping guarantees at least the interval between slots.
        let pacer = Pacer::new(100);
        let start = Instant::now();
        for _ in 0..5 {
            drop(pacer.acquire().await);
        }
        assert!(
            start.elapsed() >= Duration::from_millis(40),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn the_pacer_lets_no_more_than_n_requests_into_one_second() {
        // Ten requests under way: the eleventh waits, however long they take, and goes a
        // second after the first of them is answered (lower bounds only: sleeping
        // guarantees them), so retailCRM never counts eleven in one second.
        let pacer = std::sync::Arc::new(Pacer::new(10));
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(pacer.acquire().await);
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let p = pacer.clone();
        let eleventh = tokio::spawn(async move {
            let permit = p.acquire().await;
            let _ = tx.send(Instant::now());
            drop(permit);
        });
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(rx.try_recv().is_err(), "sent while ten were under way");
        let answered = Instant::now();
        held.truncate(9);
        let sent = rx.await.expect("the eleventh request goes");
        assert!(
            sent >= answered + Duration::from_secs(1),
            "sent {:?} after an answer",
            sent - answered
        );
        eleventh.await.expect("task");
        drop(held);
    }

    #[tokio::test]
    async fn background_work_leaves_two_of_ten_places_to_the_rest() {
        // A stock pass's requests (background) hold eight places: its ninth waits, while an
        // order's request (not background) goes at once, and so does a second one.
        let pacer = std::sync::Arc::new(Pacer::new(10));
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(crate::clients::background(pacer.acquire()).await);
        }
        let p = pacer.clone();
        let ninth = tokio::spawn(crate::clients::background(async move {
            drop(p.acquire().await);
        }));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!ninth.is_finished(), "background took a reserved place");
        let order = tokio::time::timeout(Duration::from_millis(500), pacer.acquire())
            .await
            .expect("an order's request goes while background work holds eight places");
        let order2 = tokio::time::timeout(Duration::from_millis(500), pacer.acquire())
            .await
            .expect("and a second one");
        assert!(!ninth.is_finished());
        // Blocking evaluations of background work (their lookups) count as background too.
        assert!(crate::clients::background_blocking(
            true,
            crate::clients::is_background
        ));
        assert!(!crate::clients::background_blocking(
            false,
            crate::clients::is_background
        ));
        assert!(!crate::clients::is_background());
        drop((order, order2));
        held.clear();
        tokio::time::timeout(Duration::from_secs(5), ninth)
            .await
            .expect("background goes once places are free")
            .expect("task");
    }

    /// Background work is never starved: with orders keeping every place of the second
    /// taken (three tasks asking one after another), a stock pass's request goes once it has
    /// waited its ageing bound, long before the orders' requests are done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_is_served_while_the_rest_keep_every_place_taken() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut pacer = Pacer::new(20);
        pacer.background_age = Duration::from_millis(300);
        let pacer = std::sync::Arc::new(pacer);
        // 20 a second: 60 take 3 s.
        let total = 60;
        let served = std::sync::Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (pacer, served) = (pacer.clone(), served.clone());
                tokio::spawn(async move {
                    for _ in 0..total / 3 {
                        drop(pacer.acquire().await);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // The orders fill the second before the background request asks.
        while served.load(Ordering::SeqCst) < 18 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(crate::clients::background(pacer.acquire()).await);
        let at = served.load(Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        assert!(
            at < total * 3 / 4,
            "the background request went after {at} of {total} requests of the rest"
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let base = Duration::from_millis(100);
        for _ in 0..100 {
            let d = jitter(base);
            assert!(d >= Duration::from_millis(50) && d <= base, "{d:?}");
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
