//! The МойСклад JSON API 1.2 client: auth, gzip, the request budget, retries, paging, bulk,
//! `meta` references, stock reports and webhooks. It knows API mechanics only; what to write
//! comes from rules through the runner's apply layer, which maps plan effects onto the generic
//! entity calls ([`MoyskladClient::create`], [`MoyskladClient::update`],
//! [`MoyskladClient::delete`], [`MoyskladClient::bulk_upsert`]…) with an entity name such as
//! `"customerorder"` and a JSON body.
//!
//! Behaviour, per the API doc (`shared/api/moysklad.md`):
//!
//! * Every request sends `Accept-Encoding: gzip` (responses are decompressed) and
//!   `Accept: application/json;charset=utf-8`; bodies are `application/json`.
//! * Auth is Basic (login/password) or Bearer (token). Credentials never appear in `Debug`
//!   output, logs or errors; the header is marked sensitive.
//! * Writes carry `X-Lognex-WebHook-DisableByPrefix: <prefix>` when configured, so our own
//!   changes do not come back as webhooks.
//! * The [`RateLimiter`] holds at most 5 requests in flight and a token bucket of 45 units
//!   per 3 s (stock reports weigh 5), then adapts to the `X-RateLimit-*`/`X-Lognex-*` headers.
//! * 429: wait the advertised `X-Lognex-Retry-After` (pausing the whole credential) and retry,
//!   up to [`RetryPolicy::max_rate_limit_waits`] times.
//! * 5xx: retry with exponential backoff up to [`RetryPolicy::max_attempts`] attempts.
//! * Transport errors: if the request never left ([`MoyskladError::Connect`]) it is retried like
//!   a 5xx; if it was sent and no usable response came back ([`MoyskladError::NoResponse`]) it is
//!   retried only when repeating it is safe (GET/PUT/DELETE, and POSTs whose every object
//!   carries a `syncId` or a `meta`), otherwise the error goes to the caller, who must find out
//!   whether the write happened.
//! * Other 4xx are never retried.
//! * Time: one call (all its attempts, backoffs and rate-limit waits) takes at most
//!   [`ClientConfig::timeout`] (default 60 s) from the moment its first attempt gets a slot
//!   of the request budget, plus at most 100 ms for a last attempt started just in time; a
//!   retry that could not finish in time is not started, the failure it would have retried is
//!   the answer. Waiting for the first slot is not counted: it is bounded by the calls ahead,
//!   each bounded the same way (at most 5 in flight). A connect timeout
//!   ([`ClientConfig::connect_timeout`]) is [`MoyskladError::Connect`] (nothing was sent); a
//!   timeout after that is [`MoyskladError::NoResponse`] (a write's outcome is unknown).

mod error;
mod limiter;
mod query;

use std::sync::Arc;

use skladsync_engine::Value as EngineValue;
use std::time::Duration;

use tokio::time::Instant;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};

pub use error::{parse_errors, ApiError, MoyskladError};
pub use limiter::background;
pub use limiter::{
    retry_after, LimitConfig, LimiterSnapshot, Permit, RateLimiter, LOGIN_WEIGHT, MAX_WAIT,
    SOLUTION_WEIGHT,
};
pub use query::{escape_filter_value, ListQuery};

/// The real API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.moysklad.ru/api/remap/1.2";

/// The most objects one array may carry (bulk bodies, positions).
pub const MAX_BULK: usize = 1000;

/// The default time limit of one call, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The default connect timeout of one attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Basic base64(login:password)`.
    Basic {
        /// Login (`user@account`).
        login: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Access token.
        token: String,
    },
}

impl Auth {
    /// Basic auth.
    pub fn basic(login: impl Into<String>, password: impl Into<String>) -> Auth {
        Auth::Basic {
            login: login.into(),
            password: password.into(),
        }
    }

    /// Bearer auth.
    pub fn bearer(token: impl Into<String>) -> Auth {
        Auth::Bearer {
            token: token.into(),
        }
    }

    fn header(&self) -> Result<HeaderValue, MoyskladError> {
        use base64::Engine as _;
        let raw = match self {
            Auth::Basic { login, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"))
            ),
            Auth::Bearer { token } => format!("Bearer {token}"),
        };
        let mut v = HeaderValue::from_str(&raw).map_err(|_| {
            MoyskladError::Config("credentials contain characters not allowed in a header".into())
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { .. } => f.write_str("Auth::Basic(<redacted>)"),
            Auth::Bearer { .. } => f.write_str("Auth::Bearer(<redacted>)"),
        }
    }
}

/// When and how to retry.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total for 5xx and transport errors (1 = no retry).
    pub max_attempts: u32,
    /// First backoff delay; doubles with each retry.
    pub base_delay: Duration,
    /// Cap of the backoff delay.
    pub max_delay: Duration,
    /// How many 429 answers to wait out before giving up with [`MoyskladError::RateLimited`].
    pub max_rate_limit_waits: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_rate_limit_waits: 20,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `n` (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Client settings. [`ClientConfig::new`] gives the real base URL and documented limits.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL ending in `/api/remap/1.2`.
    pub base_url: String,
    /// Credentials.
    pub auth: Auth,
    /// Sent as `X-Lognex-WebHook-DisableByPrefix` on every write (our webhook URL prefix,
    /// with scheme and host).
    pub webhook_disable_prefix: Option<String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Starting request budget.
    pub limits: LimitConfig,
    /// The longest one call may take once its first attempt has a slot in the request budget:
    /// every attempt, backoff and rate-limit wait of the call fits in it (each attempt gets the
    /// time left, and no retry starts that could not finish in time). Default
    /// [`DEFAULT_TIMEOUT`] (60 s). A write that runs out of time is reported as
    /// [`MoyskladError::NoResponse`]: its outcome is unknown.
    pub timeout: Duration,
    /// Connect timeout of one attempt (default 10 s).
    pub connect_timeout: Duration,
    /// Objects per bulk request (at most 1000).
    pub bulk_chunk_size: usize,
    /// `User-Agent`.
    pub user_agent: String,
    /// Told about every attempt (endpoint class, status), for metrics and readiness.
    pub observer: super::ApiObserver,
}

impl ClientConfig {
    /// Settings for the real API with these credentials.
    pub fn new(auth: Auth) -> ClientConfig {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.into(),
            auth,
            webhook_disable_prefix: None,
            retry: RetryPolicy::default(),
            limits: LimitConfig::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            bulk_chunk_size: MAX_BULK,
            user_agent: format!("skladsync/{}", env!("CARGO_PKG_VERSION")),
            observer: super::ApiObserver::default(),
        }
    }

    /// Sets the base URL.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sets the webhook prefix sent with writes.
    #[must_use]
    pub fn webhook_disable_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.webhook_disable_prefix = Some(prefix.into());
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the observer told about every attempt.
    #[must_use]
    pub fn observer(mut self, observer: super::ApiObserver) -> Self {
        self.observer = observer;
        self
    }

    /// Sets the starting request budget.
    #[must_use]
    pub fn limits(mut self, limits: LimitConfig) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the time limit of one call, retries included (see [`ClientConfig::timeout`]).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout of one attempt.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the bulk chunk size (clamped to 1..=1000).
    #[must_use]
    pub fn bulk_chunk_size(mut self, n: usize) -> Self {
        self.bulk_chunk_size = n.clamp(1, MAX_BULK);
        self
    }
}

/// One page of a collection.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The rows.
    pub rows: Vec<Value>,
    /// Total matching rows (`meta.size`).
    pub size: u64,
    /// `meta.limit`.
    pub limit: u64,
    /// `meta.offset`.
    pub offset: u64,
    /// `meta.nextHref`, when more rows follow.
    pub next_href: Option<String>,
}

/// Per-object result of a bulk request: the saved entity, or its errors.
pub type BulkResult = Result<Value, Vec<ApiError>>;

/// Which short stock report to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurrentReport {
    /// `report/stock/all/current`: one row per assortment item.
    All,
    /// `report/stock/bystore/current`: one row per (item, store).
    ByStore,
}

/// The id at the end of an href's path (query string dropped).
pub fn id_from_href(href: &str) -> Option<&str> {
    let path = href.split(['?', '#']).next()?;
    path.rsplit('/').next().filter(|s| !s.is_empty())
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    disable_prefix: Option<HeaderValue>,
    retry: RetryPolicy,
    limiter: RateLimiter,
    bulk_chunk: usize,
    timeout: Duration,
    observer: super::ApiObserver,
}

/// The client. Cheap to clone; clones share the connection pool and the rate limiter (one
/// client per credential).
#[derive(Clone)]
pub struct MoyskladClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MoyskladClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoyskladClient")
            .field("base_url", &self.inner.base)
            .field("auth", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn check_path(p: &str) -> Result<(), MoyskladError> {
    let ok = !p.is_empty()
        && p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(MoyskladError::InvalidRequest(format!(
            "not a valid entity path: {p:?}"
        )))
    }
}

/// The shortest time an attempt is given, so that a retry started just before the deadline
/// still has a chance (a retry starts only when [`fits`] says so).
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// Whether waiting `wait` and then making another attempt fits before `deadline`.
fn fits(deadline: Instant, wait: Duration) -> bool {
    Instant::now() + wait + MIN_ATTEMPT < deadline
}

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    )
}

/// Whether repeating a POST body cannot create duplicates: every object has a `syncId`
/// (creates are idempotent) or a `meta` (updates).
fn repeatable_post(body: Option<&Value>) -> bool {
    let safe =
        |v: &Value| v.get("syncId").is_some_and(|s| s.is_string()) || v.get("meta").is_some();
    match body {
        Some(Value::Array(items)) => items.iter().all(safe),
        Some(v @ Value::Object(_)) => safe(v),
        _ => false,
    }
}

struct Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(String, String)],
    body: Option<&'a Value>,
    weight: u32,
    /// Safe to resend after a lost response.
    repeatable: bool,
    /// Return 4xx answers whose body is an array (bulk per-item errors) instead of failing.
    batch: bool,
}

impl MoyskladClient {
    /// Builds a client.
    pub fn new(config: ClientConfig) -> Result<MoyskladClient, MoyskladError> {
        let base = config.base_url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base)
            .map_err(|e| MoyskladError::Config(format!("base URL {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(MoyskladError::Config(format!(
                "base URL {base:?} must be http(s)"
            )));
        }
        let auth = config.auth.header()?;
        let disable_prefix = match &config.webhook_disable_prefix {
            Some(p) => Some(HeaderValue::from_str(p).map_err(|_| {
                MoyskladError::Config("webhook prefix is not a valid header value".into())
            })?),
            None => None,
        };
        let mut default_headers = HeaderMap::new();
        default_headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json;charset=utf-8"),
        );
        if config.timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(MoyskladError::Config(
                "timeouts must be more than zero".into(),
            ));
        }
        // Shared by every client with the same settings (the credentials go with each
        // request).
        let key = format!(
            "moysklad {:?} {:?} {:?}",
            config.user_agent, config.timeout, config.connect_timeout
        );
        let http = crate::clients::shared_http(key, || {
            reqwest::Client::builder()
                .gzip(true)
                .default_headers(default_headers)
                .user_agent(config.user_agent.clone())
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                // МойСклад: do not keep idle connections longer than 30 s.
                .pool_idle_timeout(Duration::from_secs(25))
                .build()
        })
        .map_err(|e| MoyskladError::Config(format!("HTTP client: {e}")))?;
        Ok(MoyskladClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                disable_prefix,
                retry: config.retry,
                limiter: RateLimiter::new(config.limits),
                bulk_chunk: config.bulk_chunk_size.clamp(1, MAX_BULK),
                timeout: config.timeout,
                observer: config.observer,
            }),
        })
    }

    /// The base URL (`…/api/remap/1.2`, no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The rate limiter of this credential.
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    // ------------------------------------------------------------------------------------
    // meta helpers
    // ------------------------------------------------------------------------------------

    /// `…/entity/<entity>/<id>`.
    pub fn href(&self, entity: &str, id: &str) -> String {
        format!("{}/entity/{entity}/{id}", self.inner.base)
    }

    /// `{"meta": {"href", "type", "mediaType"}}` referring to an entity.
    pub fn meta(&self, entity: &str, id: &str) -> Value {
        json!({"meta": {"href": self.href(entity, id), "type": entity, "mediaType": "application/json"}})
    }

    /// A reference to a document state.
    pub fn state_meta(&self, document_type: &str, state_id: &str) -> Value {
        json!({"meta": {
            "href": format!("{}/entity/{document_type}/metadata/states/{state_id}", self.inner.base),
            "type": "state",
            "mediaType": "application/json"
        }})
    }

    /// A reference to a custom field definition (product, service, bundle and variant fields
    /// live under `product`).
    pub fn attribute_meta(&self, entity: &str, attribute_id: &str) -> Value {
        json!({"meta": {
            "href": format!("{}/entity/{entity}/metadata/attributes/{attribute_id}", self.inner.base),
            "type": "attributemetadata",
            "mediaType": "application/json"
        }})
    }

    /// A reference to a bank account of an organization or counterparty.
    pub fn account_meta(&self, owner_type: &str, owner_id: &str, account_id: &str) -> Value {
        json!({"meta": {
            "href": format!("{}/entity/{owner_type}/{owner_id}/accounts/{account_id}", self.inner.base),
            "type": "account",
            "mediaType": "application/json"
        }})
    }

    /// A reference to a custom dictionary element.
    pub fn dictionary_element_meta(&self, dictionary_id: &str, element_id: &str) -> Value {
        json!({"meta": {
            "href": format!("{}/entity/customentity/{dictionary_id}/{element_id}", self.inner.base),
            "type": "customentity",
            "mediaType": "application/json"
        }})
    }

    // ------------------------------------------------------------------------------------
    // transport
    // ------------------------------------------------------------------------------------

    async fn execute(&self, call: Call<'_>) -> Result<(u16, Option<Value>), MoyskladError> {
        self.execute_as(call).await
    }

    /// [`MoyskladClient::execute`], a successful answer read as `T` (an error's body is
    /// always read as JSON).
    async fn execute_as<T: Answer>(
        &self,
        call: Call<'_>,
    ) -> Result<(u16, Option<T>), MoyskladError> {
        let inner = &self.inner;
        let url = format!("{}/{}", inner.base, call.path);
        let method_s = call.method.as_str().to_string();
        let path_s = call.path.to_string();
        let endpoint = super::moysklad_endpoint(call.path);
        let body_bytes = match call.body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| {
                MoyskladError::InvalidRequest(format!("body is not serializable: {e}"))
            })?),
            None => None,
        };
        let mut attempt: u32 = 0;
        let mut waits: u32 = 0;
        // The call's time limit starts when its first attempt has a slot: queueing behind
        // other calls is bounded by their own limits. Every later wait (backoff, 429, a slot
        // for the retry) and every attempt must fit before `deadline`; when one cannot, the
        // failure that caused the retry (`pending`) is the call's answer.
        let mut deadline: Option<Instant> = None;
        let mut pending: Option<MoyskladError> = None;
        loop {
            attempt += 1;
            let permit = match (deadline, pending.take()) {
                (Some(d), Some(failure)) => {
                    match tokio::time::timeout_at(d, inner.limiter.acquire(call.weight)).await {
                        Ok(p) => p,
                        Err(_) => return Err(failure),
                    }
                }
                _ => inner.limiter.acquire(call.weight).await,
            };
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + inner.timeout);
            let left = deadline.saturating_duration_since(Instant::now());
            let mut req = inner
                .http
                .request(call.method.clone(), &url)
                .timeout(left.max(MIN_ATTEMPT))
                .header(AUTHORIZATION, inner.auth.clone());
            if !call.query.is_empty() {
                req = req.query(call.query);
            }
            if is_write(&call.method) {
                if let Some(p) = &inner.disable_prefix {
                    req = req.header(
                        HeaderName::from_static("x-lognex-webhook-disablebyprefix"),
                        p.clone(),
                    );
                }
            }
            if let Some(b) = &body_bytes {
                req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let sent = req.send().await;
            let outcome = match sent {
                Ok(resp) => {
                    inner.limiter.observe(resp.headers());
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(bytes) => Ok((status, headers, bytes)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            drop(permit);
            inner.observer.seen(
                &endpoint,
                match &outcome {
                    Ok((status, _, _)) => Some(*status),
                    Err(_) => None,
                },
            );
            let (status, headers, bytes) = match outcome {
                Ok(x) => x,
                Err(e) => {
                    // A connect timeout is a connect error (nothing was sent); a timeout after
                    // that is a lost answer.
                    let connect = e.is_connect();
                    let timeout = e.is_timeout();
                    let e = e.without_url();
                    let backoff = inner.retry.backoff(attempt);
                    let retry = (connect || call.repeatable)
                        && attempt < inner.retry.max_attempts
                        && fits(deadline, backoff);
                    tracing::warn!(
                        method = %method_s, path = %path_s, attempt, connect, timeout, retry,
                        error = %e, "МойСклад request got no response"
                    );
                    let failure = if connect {
                        MoyskladError::Connect {
                            method: method_s.clone(),
                            path: path_s.clone(),
                            source: e,
                        }
                    } else {
                        MoyskladError::NoResponse {
                            method: method_s.clone(),
                            path: path_s.clone(),
                            source: e,
                        }
                    };
                    if retry {
                        tokio::time::sleep(backoff).await;
                        pending = Some(failure);
                        continue;
                    }
                    return Err(failure);
                }
            };
            tracing::debug!(method = %method_s, path = %path_s, status, attempt, "МойСклад request");
            if (200..300).contains(&status) {
                if bytes.is_empty() {
                    return Ok((status, None));
                }
                return match T::read(&bytes) {
                    Ok(v) => Ok((status, Some(v))),
                    Err(source) => Err(MoyskladError::Decode {
                        method: method_s,
                        path: path_s,
                        status,
                        source,
                    }),
                };
            }
            let body: Option<Value> = if bytes.is_empty() {
                None
            } else {
                serde_json::from_slice(&bytes).ok()
            };
            let errors = body.as_ref().map(parse_errors).unwrap_or_default();
            if status == 429 {
                waits += 1;
                let advertised = retry_after(&headers);
                let wait = advertised.unwrap_or_else(|| inner.retry.backoff(waits));
                inner.limiter.pause(wait);
                let failure = MoyskladError::RateLimited {
                    method: method_s.clone(),
                    path: path_s.clone(),
                    retry_after: advertised,
                    errors,
                };
                if waits > inner.retry.max_rate_limit_waits || !fits(deadline, wait) {
                    return Err(failure);
                }
                tracing::info!(method = %method_s, path = %path_s, wait_ms = wait.as_millis() as u64, "МойСклад rate limit; waiting");
                // A 429 is not a failed attempt.
                attempt -= 1;
                pending = Some(failure);
                continue;
            }
            if status >= 500
                && attempt < inner.retry.max_attempts
                && fits(deadline, inner.retry.backoff(attempt))
            {
                tracing::warn!(method = %method_s, path = %path_s, status, attempt, "МойСклад server error; retrying");
                tokio::time::sleep(inner.retry.backoff(attempt)).await;
                pending = Some(MoyskladError::Api {
                    method: method_s.clone(),
                    path: path_s.clone(),
                    status,
                    errors,
                });
                continue;
            }
            if call.batch && (400..500).contains(&status) {
                if let Some(b @ Value::Array(_)) = body {
                    return Ok((status, Some(T::from_json(b))));
                }
            }
            return Err(MoyskladError::Api {
                method: method_s,
                path: path_s,
                status,
                errors,
            });
        }
    }

    /// Any request, relative to the base URL (e.g. `entity/customerorder/<id>/positions`).
    /// Returns the JSON body (`None` for an empty one). Writes are retried after a lost
    /// response only when the body is repeatable (see the module docs).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, MoyskladError> {
        let repeatable = match method {
            Method::POST => repeatable_post(body),
            Method::PATCH => false,
            _ => true,
        };
        let weight = self.weight_of(path);
        let (_, v) = self
            .execute(Call {
                method,
                path,
                query,
                body,
                weight,
                repeatable,
                batch: false,
            })
            .await?;
        Ok(v)
    }

    /// [`MoyskladClient::request`] of a GET, the answer read straight into engine values
    /// (for an entity the rules evaluate: no `serde_json::Value` in between).
    pub async fn get_value(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Option<EngineValue>, MoyskladError> {
        let weight = self.weight_of(path);
        let (_, v) = self
            .execute_as(Call {
                method: Method::GET,
                path,
                query,
                body: None,
                weight,
                repeatable: true,
                batch: false,
            })
            .await?;
        Ok(v)
    }

    fn weight_of(&self, path: &str) -> u32 {
        let cfg = self.inner.limiter.config();
        let p = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if p == "report/stock/all" || p == "report/stock/bystore" {
            cfg.stock_report_weight
        } else {
            cfg.request_weight
        }
    }

    fn expect_body<T>(v: Option<T>, path: &str) -> Result<T, MoyskladError> {
        v.ok_or_else(|| MoyskladError::Api {
            method: "GET".into(),
            path: path.to_string(),
            status: 200,
            errors: vec![ApiError {
                error: "empty body where JSON was expected".into(),
                ..ApiError::default()
            }],
        })
    }

    // ------------------------------------------------------------------------------------
    // entities
    // ------------------------------------------------------------------------------------

    /// `GET entity/<entity>/<id>` with `expand` paths.
    pub async fn get(
        &self,
        entity: &str,
        id: &str,
        expand: &[&str],
    ) -> Result<Value, MoyskladError> {
        check_path(entity)?;
        check_path(id)?;
        let path = format!("entity/{entity}/{id}");
        let q: Vec<(String, String)> = if expand.is_empty() {
            vec![]
        } else {
            vec![("expand".into(), expand.join(","))]
        };
        let v = self.request(Method::GET, &path, &q, None).await?;
        Self::expect_body(v, &path)
    }

    /// Like [`MoyskladClient::get`], with 404 as `None`, the entity read straight into
    /// engine values (for an entity the rules evaluate).
    pub async fn get_opt_value(
        &self,
        entity: &str,
        id: &str,
        expand: &[&str],
    ) -> Result<Option<EngineValue>, MoyskladError> {
        check_path(entity)?;
        check_path(id)?;
        let path = format!("entity/{entity}/{id}");
        let q: Vec<(String, String)> = if expand.is_empty() {
            vec![]
        } else {
            vec![("expand".into(), expand.join(","))]
        };
        match self.get_value(&path, &q).await {
            Ok(v) => Self::expect_body(v, &path).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`MoyskladClient::get`], with 404 as `None`.
    pub async fn get_opt(
        &self,
        entity: &str,
        id: &str,
        expand: &[&str],
    ) -> Result<Option<Value>, MoyskladError> {
        match self.get(entity, id, expand).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn page_at(
        &self,
        path: &str,
        query: &ListQuery,
        weight: u32,
    ) -> Result<Page, MoyskladError> {
        let mut q = query.clone();
        if q.get_limit().is_none() {
            let limit = if q.has_expand() { 100 } else { 1000 };
            q = q.limit(limit);
        }
        let pairs = q.to_pairs();
        let (_, v) = self
            .execute(Call {
                method: Method::GET,
                path,
                query: &pairs,
                body: None,
                weight,
                repeatable: true,
                batch: false,
            })
            .await?;
        let v = Self::expect_body(v, path)?;
        let meta = &v["meta"];
        Ok(Page {
            rows: v["rows"].as_array().cloned().unwrap_or_default(),
            size: meta["size"].as_u64().unwrap_or(0),
            limit: meta["limit"].as_u64().unwrap_or(0),
            offset: meta["offset"].as_u64().unwrap_or(0),
            next_href: meta["nextHref"].as_str().map(str::to_string),
        })
    }

    async fn all_pages(
        &self,
        path: &str,
        query: &ListQuery,
        weight: u32,
    ) -> Result<Vec<Value>, MoyskladError> {
        let mut pager = Pages {
            client: self.clone(),
            path: path.to_string(),
            query: query.clone(),
            weight,
            offset: query.get_offset(),
            done: false,
        };
        let mut rows = Vec::new();
        while let Some(page) = pager.next().await? {
            rows.extend(page.rows);
        }
        Ok(rows)
    }

    /// One page of `GET entity/<entity>` (default limit 1000, or 100 with `expand`).
    pub async fn list(&self, entity: &str, query: &ListQuery) -> Result<Page, MoyskladError> {
        check_path(entity)?;
        let path = format!("entity/{entity}");
        let w = self.weight_of(&path);
        self.page_at(&path, query, w).await
    }

    /// Every row of `GET entity/<entity>`, following pages until `meta.size` is reached.
    pub async fn list_all(
        &self,
        entity: &str,
        query: &ListQuery,
    ) -> Result<Vec<Value>, MoyskladError> {
        check_path(entity)?;
        let path = format!("entity/{entity}");
        let w = self.weight_of(&path);
        self.all_pages(&path, query, w).await
    }

    /// A page iterator over `GET entity/<entity>`.
    pub fn pages(&self, entity: &str, query: &ListQuery) -> Result<Pages, MoyskladError> {
        check_path(entity)?;
        let path = format!("entity/{entity}");
        Ok(Pages {
            client: self.clone(),
            weight: self.weight_of(&path),
            path,
            query: query.clone(),
            offset: query.get_offset(),
            done: false,
        })
    }

    /// Entities whose `field` equals `value` exactly (all pages).
    pub async fn find(
        &self,
        entity: &str,
        field: &str,
        value: &str,
    ) -> Result<Vec<Value>, MoyskladError> {
        self.list_all(entity, &ListQuery::new().filter_eq(field, value))
            .await
    }

    /// `POST entity/<entity>` with one object. With a `syncId`, re-sending returns the object
    /// created the first time (and a lost response is retried).
    pub async fn create(&self, entity: &str, body: &Value) -> Result<Value, MoyskladError> {
        self.create_expanded(entity, body, &[]).await
    }

    /// [`MoyskladClient::create`] with `expand` on the response.
    pub async fn create_expanded(
        &self,
        entity: &str,
        body: &Value,
        expand: &[&str],
    ) -> Result<Value, MoyskladError> {
        check_path(entity)?;
        if !body.is_object() {
            return Err(MoyskladError::InvalidRequest(
                "create takes one JSON object; use bulk_upsert for arrays".into(),
            ));
        }
        let path = format!("entity/{entity}");
        let q: Vec<(String, String)> = if expand.is_empty() {
            vec![]
        } else {
            vec![("expand".into(), expand.join(","))]
        };
        let v = self.request(Method::POST, &path, &q, Some(body)).await?;
        Self::expect_body(v, &path)
    }

    /// `PUT entity/<entity>/<id>` with the fields to change (nested collections sent are
    /// replaced whole).
    pub async fn update(
        &self,
        entity: &str,
        id: &str,
        body: &Value,
    ) -> Result<Value, MoyskladError> {
        check_path(entity)?;
        check_path(id)?;
        if !body.is_object() {
            return Err(MoyskladError::InvalidRequest(
                "update takes one JSON object".into(),
            ));
        }
        let path = format!("entity/{entity}/{id}");
        let v = self.request(Method::PUT, &path, &[], Some(body)).await?;
        Self::expect_body(v, &path)
    }

    /// `DELETE entity/<entity>/<id>`. A refusal because other documents use the object comes
    /// back as [`MoyskladError::Api`] with code 1028 and `dependencies`.
    pub async fn delete(&self, entity: &str, id: &str) -> Result<(), MoyskladError> {
        check_path(entity)?;
        check_path(id)?;
        self.request(Method::DELETE, &format!("entity/{entity}/{id}"), &[], None)
            .await
            .map(|_| ())
    }

    /// `DELETE entity/<entity>/syncid/<syncId>`.
    pub async fn delete_by_sync_id(
        &self,
        entity: &str,
        sync_id: &str,
    ) -> Result<(), MoyskladError> {
        check_path(entity)?;
        check_path(sync_id)?;
        self.request(
            Method::DELETE,
            &format!("entity/{entity}/syncid/{sync_id}"),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }

    /// Bulk create/update: `POST entity/<entity>` with arrays of at most the chunk size
    /// (1000). Objects with `meta` are updated, the others created. Results are per object,
    /// in order; a failed object does not fail the call.
    pub async fn bulk_upsert(
        &self,
        entity: &str,
        items: &[Value],
    ) -> Result<Vec<BulkResult>, MoyskladError> {
        check_path(entity)?;
        let path = format!("entity/{entity}");
        self.bulk(&path, items).await
    }

    async fn bulk(&self, path: &str, items: &[Value]) -> Result<Vec<BulkResult>, MoyskladError> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.inner.bulk_chunk) {
            let body = Value::Array(chunk.to_vec());
            let repeatable = path.ends_with("/delete") || repeatable_post(Some(&body));
            let (status, v) = self
                .execute(Call {
                    method: Method::POST,
                    path,
                    query: &[],
                    body: Some(&body),
                    weight: self.weight_of(path),
                    repeatable,
                    batch: true,
                })
                .await?;
            let rows = match v {
                Some(Value::Array(rows)) if rows.len() == chunk.len() => rows,
                other => {
                    return Err(MoyskladError::Api {
                        method: "POST".into(),
                        path: path.to_string(),
                        status,
                        errors: vec![ApiError {
                            error: format!(
                                "bulk answer is not an array of {} results: {}",
                                chunk.len(),
                                other.map_or("empty".into(), |v| v
                                    .to_string()
                                    .chars()
                                    .take(200)
                                    .collect::<String>())
                            ),
                            ..ApiError::default()
                        }],
                    })
                }
            };
            for r in rows {
                if r.get("errors").is_some() {
                    out.push(Err(parse_errors(&r)));
                } else {
                    out.push(Ok(r));
                }
            }
        }
        Ok(out)
    }

    /// Bulk delete: `POST entity/<entity>/delete` with the metas of `ids`. Each result is the
    /// `{"info": …}` object or the errors of that object.
    pub async fn bulk_delete(
        &self,
        entity: &str,
        ids: &[&str],
    ) -> Result<Vec<BulkResult>, MoyskladError> {
        check_path(entity)?;
        for id in ids {
            check_path(id)?;
        }
        let items: Vec<Value> = ids.iter().map(|id| self.meta(entity, id)).collect();
        self.bulk(&format!("entity/{entity}/delete"), &items).await
    }

    /// `GET entity/<entity>/metadata` (attributes, states).
    pub async fn metadata(&self, entity: &str) -> Result<Value, MoyskladError> {
        check_path(entity)?;
        let path = format!("entity/{entity}/metadata");
        let v = self.request(Method::GET, &path, &[], None).await?;
        Self::expect_body(v, &path)
    }

    /// Custom field definitions of an entity type.
    pub async fn attributes(&self, entity: &str) -> Result<Vec<Value>, MoyskladError> {
        check_path(entity)?;
        self.all_pages(
            &format!("entity/{entity}/metadata/attributes"),
            &ListQuery::new(),
            self.inner.limiter.config().request_weight,
        )
        .await
    }

    /// States of a document type.
    pub async fn states(&self, document_type: &str) -> Result<Vec<Value>, MoyskladError> {
        let m = self.metadata(document_type).await?;
        Ok(m["states"].as_array().cloned().unwrap_or_default())
    }

    /// The employee these credentials belong to (`GET context/employee`).
    pub async fn current_employee(&self) -> Result<Value, MoyskladError> {
        let v = self
            .request(Method::GET, "context/employee", &[], None)
            .await?;
        Self::expect_body(v, "context/employee")
    }

    // ------------------------------------------------------------------------------------
    // stock reports
    // ------------------------------------------------------------------------------------

    /// Every row of `report/stock/all` (weight 5 per page). For a full pass add
    /// `filter=stockMode=all;quantityMode=all` so that zeros come back.
    pub async fn stock_all(&self, query: &ListQuery) -> Result<Vec<Value>, MoyskladError> {
        let w = self.inner.limiter.config().stock_report_weight;
        self.all_pages("report/stock/all", query, w).await
    }

    /// Every row of `report/stock/bystore` (weight 5 per page).
    pub async fn stock_by_store(&self, query: &ListQuery) -> Result<Vec<Value>, MoyskladError> {
        let w = self.inner.limiter.config().stock_report_weight;
        self.all_pages("report/stock/bystore", query, w).await
    }

    /// The pages of `report/stock/all` (weight 5 each), fetched one at a time.
    pub fn stock_all_pages(&self, query: &ListQuery) -> Pages {
        self.report_pages("report/stock/all", query)
    }

    /// The pages of `report/stock/bystore` (weight 5 each), fetched one at a time.
    pub fn stock_by_store_pages(&self, query: &ListQuery) -> Pages {
        self.report_pages("report/stock/bystore", query)
    }

    fn report_pages(&self, path: &str, query: &ListQuery) -> Pages {
        Pages {
            client: self.clone(),
            path: path.to_string(),
            query: query.clone(),
            weight: self.inner.limiter.config().stock_report_weight,
            offset: query.get_offset(),
            done: false,
        }
    }

    /// A short current-stock report (a flat array, not paged). Use `query.param("stockType",
    /// …)`, `param("changedSince", …)`, `param("include", "zeroLines")` and
    /// `filter_raw("assortmentId=<id1>,<id2>")`.
    pub async fn stock_current(
        &self,
        report: CurrentReport,
        query: &ListQuery,
    ) -> Result<Vec<Value>, MoyskladError> {
        let path = match report {
            CurrentReport::All => "report/stock/all/current",
            CurrentReport::ByStore => "report/stock/bystore/current",
        };
        let v = self
            .request(Method::GET, path, &query.to_pairs(), None)
            .await?;
        match v {
            Some(Value::Array(rows)) => Ok(rows),
            _ => Err(MoyskladError::Api {
                method: "GET".into(),
                path: path.into(),
                status: 200,
                errors: vec![ApiError {
                    error: "current stock report is not an array".into(),
                    ..ApiError::default()
                }],
            }),
        }
    }

    // ------------------------------------------------------------------------------------
    // audit
    // ------------------------------------------------------------------------------------

    /// Every context of `GET audit` that `query` selects (newest first; filters `moment>=`,
    /// `moment<=`, `eventType`, `entityType`, `source`, `uid`, `employee`; the same field
    /// several times with `=` is an OR).
    pub async fn audit(&self, query: &ListQuery) -> Result<Vec<Value>, MoyskladError> {
        let w = self.weight_of("audit");
        self.all_pages("audit", query, w).await
    }

    /// Every event of one audit context (`GET audit/<id>/events`).
    pub async fn audit_events(&self, context_id: &str) -> Result<Vec<Value>, MoyskladError> {
        check_path(context_id)?;
        let path = format!("audit/{context_id}/events");
        let w = self.weight_of(&path);
        self.all_pages(&path, &ListQuery::new(), w).await
    }

    // ------------------------------------------------------------------------------------
    // webhooks
    // ------------------------------------------------------------------------------------

    /// Every webhook subscription visible to API 1.2.
    pub async fn webhooks(&self) -> Result<Vec<Value>, MoyskladError> {
        self.list_all("webhook", &ListQuery::new()).await
    }

    /// Subscribes `url` to `action` (`CREATE`/`UPDATE`/`DELETE`) on `entity_type`;
    /// `diff_fields` asks for `updatedFields` (UPDATE only).
    pub async fn create_webhook(
        &self,
        url: &str,
        entity_type: &str,
        action: &str,
        diff_fields: bool,
    ) -> Result<Value, MoyskladError> {
        let mut body = json!({"url": url, "entityType": entity_type, "action": action});
        if diff_fields {
            body["diffType"] = json!("FIELDS");
        }
        self.create("webhook", &body).await
    }

    /// Deletes a webhook subscription.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), MoyskladError> {
        self.delete("webhook", id).await
    }
}

/// Pages of a collection, fetched one at a time.
#[derive(Debug)]
pub struct Pages {
    client: MoyskladClient,
    path: String,
    query: ListQuery,
    weight: u32,
    offset: u32,
    done: bool,
}

impl Pages {
    /// The next page, or `None` after the last one.
    pub async fn next(&mut self) -> Result<Option<Page>, MoyskladError> {
        if self.done {
            return Ok(None);
        }
        let q = self.query.clone().offset(self.offset);
        let page = self.client.page_at(&self.path, &q, self.weight).await?;
        let got = page.rows.len() as u64;
        let next = u64::from(self.offset) + got;
        if got == 0 || next >= page.size || page.next_href.is_none() {
            self.done = true;
        }
        self.offset = u32::try_from(next).unwrap_or(u32::MAX);
        Ok(Some(page))
    }
}

/// What a successful answer is read into: JSON, or engine values for an entity the rules
/// evaluate.
trait Answer: Sized {
    /// Reads a body.
    fn read(bytes: &[u8]) -> Result<Self, serde_json::Error>;
    /// The same of a body read as JSON already.
    fn from_json(v: Value) -> Self;
}

impl Answer for Value {
    fn read(bytes: &[u8]) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    fn from_json(v: Value) -> Value {
        v
    }
}

impl Answer for EngineValue {
    fn read(bytes: &[u8]) -> Result<EngineValue, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    fn from_json(v: Value) -> EngineValue {
        EngineValue::from_json(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_credentials() {
        let a = Auth::basic("user@acc", "s3cret-pass");
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("user@acc"));
        let c = ClientConfig::new(Auth::bearer("tok-123456"));
        assert!(!format!("{c:?}").contains("tok-123456"));
        let client = MoyskladClient::new(c).expect("client");
        assert!(!format!("{client:?}").contains("tok-123456"));
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("customerorder").is_ok());
        assert!(check_path("customentity/0e3a0000-5a1e-11f0-0a80-000000000001").is_ok());
        for bad in ["", "../x", "a//b", "a?b", "a b", "a/./b"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeatable_posts() {
        assert!(repeatable_post(Some(&json!({"syncId": "x"}))));
        assert!(!repeatable_post(Some(&json!({"name": "x"}))));
        assert!(repeatable_post(Some(
            &json!([{"syncId": "a"}, {"meta": {}}])
        )));
        assert!(!repeatable_post(Some(
            &json!([{"syncId": "a"}, {"name": "b"}])
        )));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        assert_eq!(r.backoff(1), Duration::from_millis(100));
        assert_eq!(r.backoff(2), Duration::from_millis(200));
        assert_eq!(r.backoff(3), Duration::from_millis(350));
    }

    #[test]
    fn meta_helpers() {
        let c = MoyskladClient::new(
            ClientConfig::new(Auth::bearer("t")).base_url("http://127.0.0.1:1/api/remap/1.2/"),
        )
        .expect("client");
        assert_eq!(
            c.meta("store", "abc"),
            json!({"meta": {"href": "http://127.0.0.1:1/api/remap/1.2/entity/store/abc", "type": "store", "mediaType": "application/json"}})
        );
        assert_eq!(
            c.state_meta("customerorder", "s1")["meta"]["href"],
            "http://127.0.0.1:1/api/remap/1.2/entity/customerorder/metadata/states/s1"
        );
        assert_eq!(
            id_from_href("http://h/api/remap/1.2/entity/product/p1?expand=supplier"),
            Some("p1")
        );
    }
}
