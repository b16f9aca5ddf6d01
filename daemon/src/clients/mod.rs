//! HTTP clients of the two systems. They know API mechanics (auth, paging, rate limits,
//! envelopes), never sync behaviour: that lives in `rules/`.

pub mod moysklad;
pub mod retailcrm;

use std::sync::Arc;

tokio::task_local! {
    /// Set on a task whose API calls are background work (a stock pass): see [`background`].
    static BACKGROUND: bool;
}

std::thread_local! {
    /// The same for an evaluation on a blocking-pool thread started by such a task (its
    /// lookups call the clients through `Handle::block_on`, outside the task).
    static BACKGROUND_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as background work (a stock pass, the reconciliation poll, the catalogue
/// export): its МойСклад requests yield to the worker's (see `moysklad::limiter`) and its
/// retailCRM requests leave part of the rate limit to the rest (see the retailCRM client's
/// pacer), so that orders are not held up by a stock pass's 70-odd reads and uploads. Tasks
/// spawned inside it are foreground again; an evaluation it starts on a blocking-pool thread
/// is background through [`background_blocking`].
pub async fn background<F: std::future::Future>(f: F) -> F::Output {
    BACKGROUND.scope(true, f).await
}

/// Whether the calling task or thread does background work.
pub fn is_background() -> bool {
    BACKGROUND.try_with(|b| *b).unwrap_or(false) || BACKGROUND_THREAD.with(|b| b.get())
}

/// Runs the blocking `f` (on a blocking-pool thread) as background work if `background`:
/// pass [`is_background`] of the task that spawned it.
pub fn background_blocking<R>(background: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let was = self.0;
            BACKGROUND_THREAD.with(|b| b.set(was));
        }
    }
    let _restore = Restore(BACKGROUND_THREAD.with(|b| b.replace(background)));
    f()
}

/// The HTTP clients (connection pools, TLS configuration) of this process, by the settings
/// they were built with: every API client built with the same settings shares one, so that a
/// runner serving many account pairs holds one pool per API host, not one per pair.
/// Credentials are never part of a shared client: they go with each request.
static SHARED_HTTP: std::sync::Mutex<Option<std::collections::HashMap<String, reqwest::Client>>> =
    std::sync::Mutex::new(None);

/// The shared HTTP client of the settings `key` (which must name every setting `build` uses),
/// built once.
pub(crate) fn shared_http(
    key: String,
    build: impl FnOnce() -> reqwest::Result<reqwest::Client>,
) -> reqwest::Result<reqwest::Client> {
    let mut map = SHARED_HTTP.lock().unwrap_or_else(|p| p.into_inner());
    let map = map.get_or_insert_with(Default::default);
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let c = build()?;
    map.insert(key, c.clone());
    Ok(c)
}

/// A function told about every HTTP attempt a client makes: the endpoint class (a short,
/// bounded label such as `entity/customerorder` or `orders`, never an id) and the status
/// (`None`: no response at all). The daemon counts them for `/metrics` and `/readyz`.
type ObserverFn = dyn Fn(&str, Option<u16>) + Send + Sync;

/// Watches a client's requests (see [`ObserverFn`]); none by default.
#[derive(Clone, Default)]
pub struct ApiObserver(Option<Arc<ObserverFn>>);

impl ApiObserver {
    /// An observer calling `f` for every attempt.
    pub fn new(f: impl Fn(&str, Option<u16>) + Send + Sync + 'static) -> Self {
        ApiObserver(Some(Arc::new(f)))
    }

    /// Reports one attempt.
    pub fn seen(&self, endpoint: &str, status: Option<u16>) {
        if let Some(f) = &self.0 {
            f(endpoint, status);
        }
    }
}

impl std::fmt::Debug for ApiObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ApiObserver(Some)"
        } else {
            "ApiObserver(None)"
        })
    }
}

/// The endpoint class of a МойСклад path relative to the API root: its first two segments
/// (`entity/customerorder`, `report/stock`, `context/employee`), ids left out.
pub fn moysklad_endpoint(path: &str) -> String {
    let p = path.split(['?', '#']).next().unwrap_or_default();
    let mut segs = p.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some(a), Some(b)) if !looks_like_id(b) => format!("{a}/{b}"),
        (Some(a), _) => a.to_string(),
        _ => "other".to_string(),
    }
}

/// The endpoint class of a retailCRM path (after `/api/v5`): its first segment (`orders`,
/// `customers`, `reference`, `store`, …).
pub fn retailcrm_endpoint(segments: &[String]) -> String {
    segments
        .iter()
        .map(String::as_str)
        .find(|s| !s.is_empty() && *s != "api" && *s != "v5")
        .unwrap_or("other")
        .to_string()
}

/// Whether a path segment is an id (a UUID or a number), not a name.
fn looks_like_id(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit())
        || (s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_classes_leave_ids_out() {
        assert_eq!(
            moysklad_endpoint("entity/customerorder/0b7d2f5e-1c1a-11ee-0a80-000000000001"),
            "entity/customerorder"
        );
        assert_eq!(moysklad_endpoint("report/stock/all?x=1"), "report/stock");
        assert_eq!(moysklad_endpoint("entity/12"), "entity");
        let segs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            retailcrm_endpoint(&segs(&["api", "v5", "orders", "history"])),
            "orders"
        );
    }
}
