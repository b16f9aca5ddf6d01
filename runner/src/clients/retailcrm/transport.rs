//! One HTTP exchange with retailCRM: pacing, key header, form/query encoding, retries and the
//! response envelope.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
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

/// A shared pacing gate: at most one request per `interval`, no bursts.
///
/// retailCRM counts requests per key per second where they arrive, and requests sent evenly
/// at exactly `1 s / n` apart arrive unevenly (one delayed request and `n + 1` of them land
/// in one second). The gate therefore spaces them [`PACING_MARGIN`] wider: `n` requests take
/// 1.1 s, so any second holds at most `n` even when each arrives up to 100 ms late.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

/// How much wider than `1 s / n` the gate spaces requests (see [`Pacer`]).
pub(crate) const PACING_MARGIN: Duration = Duration::from_millis(100);

impl Pacer {
    pub fn new(per_second: u32) -> Self {
        Self {
            interval: (Duration::from_secs(1) + PACING_MARGIN) / per_second.max(1),
            next: Mutex::new(None),
        }
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) {
        let wait = {
            // A poisoned lock only means another task panicked mid-update of an Instant;
            // the value is still a valid slot.
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = match *next {
                Some(t) if t > now => t,
                _ => now,
            };
            *next = Some(slot + self.interval);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The HTTP side of the client.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    pub config: ClientConfig,
    pacer: Option<Pacer>,
}

enum Outcome {
    Done(Result<Value, Error>),
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
            if let Some(p) = &self.pacer {
                match (deadline, pending.take()) {
                    (Some(d), Some(failure)) => {
                        if tokio::time::timeout_at(d, p.acquire()).await.is_err() {
                            return Err(failure);
                        }
                    }
                    _ => p.acquire().await,
                }
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.config.timeout);
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = self
                .try_once(call, &url, &path, attempt, left.max(MIN_ATTEMPT))
                .await;
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

    async fn try_once(
        &self,
        call: &Call,
        url: &url::Url,
        path: &str,
        attempt: u32,
        time_left: Duration,
    ) -> Outcome {
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
        let net_failure = |e: reqwest::Error| -> Outcome {
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
        let answer = self.envelope(method, path, status, &body);
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

    fn envelope(&self, method: &str, path: &str, status: u16, body: &[u8]) -> Result<Value, Error> {
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
            pacer.acquire().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(40),
            "{:?}",
            start.elapsed()
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
