//! МойСклад side of the daemon: the `updated>=` reconciliation poll (webhooks can be lost)
//! and the registration of the webhooks the rules need.
//!
//! Which webhooks: one per `moysklad.<entity>.<action>` event that some rule listens to
//! (`created` → `CREATE`, `updated` → `UPDATE` with `diffType: FIELDS`, `deleted` →
//! `DELETE`), all pointing at this runner's receiver. Webhooks of ours (the same secret path)
//! that no rule needs any more, or that point at an old address, are deleted. Rules may also create webhooks themselves (`create: moysklad.webhook`,
//! e.g. on `settings.saved`); the runner fills in its own `url` when the body has none.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};

use crate::apply::ApplyError;
use crate::clients::moysklad::{id_from_href, ListQuery};
use crate::state::{Source, Work};

use super::{Daemon, DaemonError};

/// `YYYY-MM-DD HH:MM:SS` of a МойСклад datetime (milliseconds dropped).
fn seconds(t: &str) -> String {
    t.chars().take(19).collect()
}

/// Moscow time now, as МойСклад writes it (to the second).
fn moscow_now_minus(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .with_timezone(&super::MOYSKLAD_TIMEZONE)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `YYYY-MM-DD HH:MM:SS` moved by `secs` (unchanged when it does not parse).
fn shift_seconds(t: &str, secs: i64) -> String {
    chrono::NaiveDateTime::parse_from_str(&seconds(t), "%Y-%m-%d %H:%M:%S")
        .map(|d| {
            (d + chrono::Duration::seconds(secs))
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

/// The cursor of the deletion poll.
const DELETED_CURSOR: &str = "ms.deleted";

/// The deletion poll asks again for audit contexts this many seconds before its watermark.
pub const AUDIT_OVERLAP_SECS: i64 = 60;

/// At most this many audit contexts (one request each) are read per poll round.
pub const AUDIT_CONTEXTS_MAX: usize = 100;

/// Where the deletion poll stands.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct AuditCursor {
    /// The newest context moment handled (Moscow time, to the second).
    since: String,
    /// Contexts handled within [`AUDIT_OVERLAP_SECS`] of `since`: id → moment.
    seen: BTreeMap<String, String>,
}

fn str_of<'a>(v: &'a Json, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Json::as_str)
}

impl Daemon {
    /// МойСклад entity types some rule listens to, with the actions.
    pub(super) fn ms_listened(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let live = self.live();
        for name in &live.listened {
            let mut parts = name.splitn(3, '.');
            if let (Some("moysklad"), Some(entity), Some(action)) =
                (parts.next(), parts.next(), parts.next())
            {
                if matches!(action, "created" | "updated" | "deleted") {
                    out.entry(entity.to_string())
                        .or_default()
                        .insert(action.to_string());
                }
            }
        }
        out
    }

    /// Polls every listened entity type for changes since its watermark, and the audit for
    /// deletions of the types whose deletions some rule listens to, and queues them. Returns
    /// how many were queued.
    pub async fn reconcile(&self) -> Result<usize, DaemonError> {
        // One failing does not hold the other up.
        let updates = self.reconcile_updates().await;
        let deletions = self.reconcile_deletions().await;
        Ok(updates? + deletions?)
    }

    /// The `updated>=` poll.
    async fn reconcile_updates(&self) -> Result<usize, DaemonError> {
        let ms = &self.inner.systems.ms;
        let state = &self.inner.state;
        let mut queued = 0;
        for (entity, actions) in self.ms_listened() {
            if !actions.contains("created") && !actions.contains("updated") {
                continue;
            }
            let name = format!("ms.updated.{entity}");
            let Some(w) = state
                .cursor(&name)?
                .and_then(|v| v.as_str().map(str::to_string))
            else {
                self.bootstrap_watermark(&entity, &name).await?;
                self.inner.observed.caught_up(&name);
                continue;
            };
            let rows = ms
                .list_all(&entity, &ListQuery::new().updated_since(&w))
                .await?;
            let mut max = w.clone();
            let mut works = Vec::new();
            for r in rows {
                let (Some(id), Some(updated)) = (str_of(&r, "id"), str_of(&r, "updated")) else {
                    continue;
                };
                if seconds(updated) > max {
                    max = seconds(updated);
                }
                let seen = state.ms_seen(&entity, id)?;
                let own = state.ms_own(&entity, id)?;
                if own.as_deref() == Some(updated) {
                    self.inner.stats.echo();
                    continue;
                }
                if seen.as_deref() == Some(updated) {
                    continue;
                }
                let created_now = str_of(&r, "created").is_some_and(|c| seconds(c) >= w);
                let action = if created_now && actions.contains("created") {
                    "created"
                } else if actions.contains("updated") {
                    "updated"
                } else {
                    continue;
                };
                let href = r
                    .pointer("/meta/href")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                works.push(Work::Moysklad {
                    entity: entity.clone(),
                    action: action.to_string(),
                    id: id.to_string(),
                    href,
                    updated_fields: Vec::new(),
                    request_id: None,
                    source: Source::Poll,
                });
            }
            let n = works.len();
            if !self.enqueue_bounded(works)? {
                // The inbox is full: the watermark stays, the next poll finds these again.
                tracing::warn!(entity = %entity, "the inbox is full: the МойСклад poll keeps its watermark");
                continue;
            }
            queued += n;
            state.set_cursor(&name, &json!(max))?;
            self.inner.observed.caught_up(&name);
        }
        // The catalogue mirror: what changed in the assortment since its last read.
        match self.inner.catalogue.refresh(ms).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(items = n, "catalogue mirror refreshed"),
            Err(e) => tracing::warn!(error = %e, "cannot refresh the catalogue mirror"),
        }
        Ok(queued)
    }

    /// The deletion poll: one `GET audit` per round for every type whose deletions some rule
    /// listens to (`eventType=delete;entityType=a;entityType=b;moment>=…`), then the events
    /// of each new deletion context (`GET audit/<id>/events`, one request per context), each
    /// deleted entity queued as `moysklad.<entity>.deleted` from the poll. The watermark
    /// (`cursor/ms.deleted`: the newest context moment seen, and the ids of the contexts
    /// handled in the last [`AUDIT_OVERLAP_SECS`]) survives restarts; the first poll starts
    /// now. Contexts are asked for again from [`AUDIT_OVERLAP_SECS`] before the watermark
    /// (the audit may be written late) and skipped by id. At most [`AUDIT_CONTEXTS_MAX`]
    /// contexts are read per round, oldest first; the rest wait for the next round.
    ///
    /// A deletion a webhook reported too is queued once (see `msgone/…` in the state); our
    /// own deletions are not reported (as МойСклад sends no webhook for them).
    async fn reconcile_deletions(&self) -> Result<usize, DaemonError> {
        let types: Vec<String> = self
            .ms_listened()
            .into_iter()
            .filter(|(_, actions)| actions.contains("deleted"))
            .map(|(entity, _)| entity)
            .collect();
        if types.is_empty() {
            return Ok(0);
        }
        let ms = &self.inner.systems.ms;
        let state = &self.inner.state;
        let query = |since: &str| {
            let mut q = ListQuery::new().filter_eq("eventType", "delete");
            for t in &types {
                q = q.filter_eq("entityType", t);
            }
            q.filter("moment", ">=", &shift_seconds(since, -AUDIT_OVERLAP_SECS))
        };
        let contexts_of = |rows: Vec<Json>| -> Vec<(String, String)> {
            rows.iter()
                .filter_map(|c| {
                    let id = str_of(c, "id")?;
                    let moment = str_of(c, "moment").map(seconds)?;
                    Some((moment, id.to_string()))
                })
                .collect()
        };
        let Some(mut cursor) = state
            .cursor(DELETED_CURSOR)?
            .and_then(|v| serde_json::from_value::<AuditCursor>(v).ok())
        else {
            // First poll: from now on (a new runner does not replay an account's past), the
            // deletions of the overlap before now taken as seen.
            let mut c = AuditCursor {
                since: moscow_now_minus(0),
                seen: BTreeMap::new(),
            };
            for (moment, id) in contexts_of(ms.audit(&query(&c.since)).await?) {
                if moment > c.since {
                    c.since = moment.clone();
                }
                c.seen.insert(id, moment);
            }
            state.set_cursor(DELETED_CURSOR, &json!(c))?;
            return Ok(0);
        };
        let mut contexts: Vec<(String, String)> =
            contexts_of(ms.audit(&query(&cursor.since)).await?)
                .into_iter()
                .filter(|(_, id)| !cursor.seen.contains_key(id))
                .collect();
        contexts.sort();
        contexts.dedup();
        contexts.truncate(AUDIT_CONTEXTS_MAX);
        let mut works = Vec::new();
        for (_, id) in &contexts {
            let events = match ms.audit_events(id).await {
                Ok(events) => events,
                // A context that cannot be found any more has nothing to give: skipped (and
                // taken as read), so it cannot stop the poll for good.
                Err(e) if e.is_not_found() => {
                    tracing::warn!(context = %id, "a МойСклад audit context was not found; skipped");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for ev in events {
                if str_of(&ev, "eventType") != Some("delete") {
                    continue;
                }
                let Some(entity) =
                    str_of(&ev, "entityType").filter(|e| types.iter().any(|t| t == e))
                else {
                    continue;
                };
                let Some(href) = ev.pointer("/entity/meta/href").and_then(Json::as_str) else {
                    continue;
                };
                let href = href.split(['?', '#']).next().unwrap_or_default();
                let Some(eid) = id_from_href(href).filter(|i| crate::world::lookups::ms_safe(i))
                else {
                    continue;
                };
                works.push(Work::Moysklad {
                    entity: entity.to_string(),
                    action: "deleted".to_string(),
                    id: eid.to_string(),
                    href: href.to_string(),
                    updated_fields: Vec::new(),
                    request_id: None,
                    source: Source::Poll,
                });
            }
        }
        let n = works.len();
        if !self.enqueue_bounded(works)? {
            tracing::warn!("the inbox is full: the МойСклад deletion poll keeps its watermark");
            return Ok(0);
        }
        for (moment, id) in contexts {
            if moment > cursor.since {
                cursor.since = moment.clone();
            }
            cursor.seen.insert(id, moment);
        }
        let keep_from = shift_seconds(&cursor.since, -AUDIT_OVERLAP_SECS);
        cursor.seen.retain(|_, m| *m >= keep_from);
        state.set_cursor(DELETED_CURSOR, &json!(cursor))?;
        if n > 0 {
            tracing::info!(deletions = n, "МойСклад deletions found in the audit");
        }
        Ok(n)
    }

    /// First poll of an entity type: start at its newest `updated`, and take what is there
    /// as seen (a new runner does not replay an account's past).
    async fn bootstrap_watermark(&self, entity: &str, name: &str) -> Result<(), DaemonError> {
        let ms = &self.inner.systems.ms;
        let state = &self.inner.state;
        let newest = ms
            .list(entity, &ListQuery::new().order("updated", true).limit(1))
            .await?;
        let w = newest
            .rows
            .first()
            .and_then(|r| str_of(r, "updated"))
            .map(seconds)
            .unwrap_or_else(|| moscow_now_minus(1));
        for r in ms
            .list_all(entity, &ListQuery::new().updated_since(&w))
            .await?
        {
            if let (Some(id), Some(updated)) = (str_of(&r, "id"), str_of(&r, "updated")) {
                state.set_ms_seen(entity, id, updated)?;
            }
        }
        state.set_cursor(name, &json!(w))?;
        Ok(())
    }

    /// Registers the webhooks the rules need, removes this runner's registrations that are
    /// no longer needed or carry an old address or secret, and refuses to take over
    /// registrations of another runner instance (unless `receiver.take_over`).
    ///
    /// Whose a registration is, by its URL path `…/moysklad/webhook/<secret>[/<instance>]`:
    /// this runner's when it carries our instance id, or (made before instance ids) no
    /// instance and a secret this runner has used; another runner's when it carries another
    /// instance id, or no instance and a secret we never used. URLs of any other shape are
    /// not skladsync's and are left alone.
    pub(super) async fn register_webhooks(&self) -> Result<usize, RegisterError> {
        let Some(url) = self.inner.webhook_url.as_deref() else {
            return Ok(0);
        };
        check_reachable(url, self.inner.systems.ms.base_url()).map_err(RegisterError::Refused)?;
        let ms = &self.inner.systems.ms;
        let mut wanted: BTreeSet<(String, &'static str)> = BTreeSet::new();
        for (entity, actions) in self.ms_listened() {
            for a in actions {
                let action = match a.as_str() {
                    "created" => "CREATE",
                    "updated" => "UPDATE",
                    _ => "DELETE",
                };
                wanted.insert((entity.clone(), action));
            }
        }
        let used: Vec<String> = self
            .inner
            .state
            .misc("webhook_secrets_used")
            .map_err(|e| RegisterError::Api(e.into()))?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let me = &self.inner.instance_id;
        let existing = ms
            .webhooks()
            .await
            .map_err(|e| RegisterError::Api(e.into()))?;
        let mut ours: Vec<&Json> = Vec::new();
        let mut foreign: Vec<&Json> = Vec::new();
        for h in &existing {
            match str_of(h, "url").and_then(skladsync_path) {
                Some((_, Some(inst))) if inst == me => ours.push(h),
                Some((secret, None)) if used.contains(&super::secret_digest(secret)) => {
                    ours.push(h)
                }
                Some(_) => foreign.push(h),
                None => {}
            }
        }
        if !foreign.is_empty() {
            if !self.inner.config.receiver.take_over {
                let owners: BTreeSet<String> = foreign
                    .iter()
                    .filter_map(|h| str_of(h, "url").and_then(skladsync_path))
                    .map(|(_, inst)| inst.unwrap_or("(made before instance ids)").to_string())
                    .collect();
                return Err(RegisterError::Refused(format!(
                    "{} webhook registration(s) on this МойСклад account belong to another \
                     skladsync runner (instance {}; this runner is instance {me}). Two runners \
                     syncing one account would process every change twice, so this one does \
                     not start. Stop the other runner, or, if it is gone for good (its state \
                     directory lost or replaced), start once with `--take-over` (or \
                     `receiver.take_over: true`) to take its registrations over",
                    foreign.len(),
                    owners.into_iter().collect::<Vec<_>>().join(", "),
                )));
            }
            tracing::warn!(
                count = foreign.len(),
                "taking over the webhook registrations of another skladsync runner (receiver.take_over)"
            );
            for h in &foreign {
                if let Some(id) = hook_id(h) {
                    ms.delete_webhook(id)
                        .await
                        .map_err(|e| RegisterError::Api(e.into()))?;
                }
            }
        }
        let mut made = 0;
        for h in &ours {
            let (Some(e), Some(a)) = (str_of(h, "entityType"), str_of(h, "action")) else {
                continue;
            };
            let current = str_of(h, "url") == Some(url);
            let needed = wanted.iter().any(|(we, wa)| we == e && *wa == a);
            if !(current && needed) {
                if let Some(id) = hook_id(h) {
                    ms.delete_webhook(id)
                        .await
                        .map_err(|e| RegisterError::Api(e.into()))?;
                }
            }
        }
        for (entity, action) in &wanted {
            let have = ours.iter().any(|h| {
                str_of(h, "url") == Some(url)
                    && str_of(h, "entityType") == Some(entity.as_str())
                    && str_of(h, "action") == Some(action)
            });
            if !have {
                ms.create_webhook(url, entity, action, *action == "UPDATE")
                    .await
                    .map_err(|e| RegisterError::Api(e.into()))?;
                made += 1;
            }
        }
        tracing::info!(
            registered = made,
            wanted = wanted.len(),
            "МойСклад webhooks"
        );
        Ok(made)
    }
}

/// Why the webhooks were not registered.
#[derive(Debug)]
pub(super) enum RegisterError {
    /// Registering as configured is refused (another runner's registrations, an address
    /// МойСклад cannot reach): the runner does not start.
    Refused(String),
    /// An API call failed: journalled, the runner goes on (the poll is the backstop).
    Api(ApplyError),
}

/// The id of a webhook registration.
fn hook_id(h: &Json) -> Option<&str> {
    str_of(h, "id").or_else(|| {
        h.pointer("/meta/href")
            .and_then(Json::as_str)
            .and_then(id_from_href)
    })
}

/// `(secret, instance)` of a skladsync webhook URL (`…/moysklad/webhook/<secret>` or
/// `…/moysklad/webhook/<secret>/<instance>`); `None` for any other URL.
fn skladsync_path(url: &str) -> Option<(&str, Option<&str>)> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let i = path.rfind("/moysklad/webhook/")?;
    let rest = &path[i + "/moysklad/webhook/".len()..];
    let mut parts = rest.split('/');
    let secret = parts.next().filter(|s| !s.is_empty())?;
    let instance = parts.next().filter(|s| !s.is_empty());
    if parts.next().is_some() {
        return None;
    }
    Some((secret, instance))
}

/// Whether a host is this machine only (`localhost`, `127.x`, `::1`).
fn loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    }
}

/// Refuses to register a receiver on a loopback address with a МойСклад that is not on this
/// machine: it could never deliver a notification there.
pub(super) fn check_reachable(webhook_url: &str, moysklad_url: &str) -> Result<(), String> {
    let host_of = |u: &str| {
        url::Url::parse(u)
            .ok()
            .and_then(|u| u.host().map(|h| h.to_owned()))
    };
    let (Some(hook), Some(ms)) = (host_of(webhook_url), host_of(moysklad_url)) else {
        return Ok(());
    };
    let local = |h: &url::Host<String>| match h {
        url::Host::Domain(d) => loopback_host(&url::Host::Domain(d.as_str())),
        url::Host::Ipv4(a) => loopback_host(&url::Host::Ipv4(*a)),
        url::Host::Ipv6(a) => loopback_host(&url::Host::Ipv6(*a)),
    };
    if local(&hook) && !local(&ms) {
        return Err(format!(
            "the webhook receiver's address {hook} is this machine only (loopback), and \
             МойСклад at {ms} cannot reach it. Set `webhooks.public_url` to the address \
             МойСклад can reach (e.g. https://sync.example.ru), or `webhooks.register: false` \
             to rely on the reconciliation poll alone"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skladsync_paths_are_recognised() {
        assert_eq!(
            skladsync_path("https://h/x/moysklad/webhook/s3c/inst?requestId=1"),
            Some(("s3c", Some("inst")))
        );
        assert_eq!(
            skladsync_path("http://h/moysklad/webhook/s3c"),
            Some(("s3c", None))
        );
        assert_eq!(skladsync_path("http://h/moysklad/webhook/"), None);
        assert_eq!(skladsync_path("http://h/other/hook"), None);
        assert_eq!(skladsync_path("http://h/moysklad/webhook/a/b/c"), None);
    }

    #[test]
    fn loopback_receivers_need_a_local_moysklad() {
        let remote = "https://api.moysklad.ru/api/remap/1.2";
        for hook in [
            "http://127.0.0.1:8088/moysklad/webhook/s/i",
            "http://127.3.2.1/moysklad/webhook/s/i",
            "http://[::1]:8088/moysklad/webhook/s/i",
            "http://localhost:8088/moysklad/webhook/s/i",
        ] {
            let e = check_reachable(hook, remote).expect_err(hook);
            assert!(e.contains("webhooks.public_url"), "{e}");
        }
        assert!(check_reachable("https://sync.example.ru/moysklad/webhook/s/i", remote).is_ok());
        assert!(check_reachable(
            "http://127.0.0.1:8088/moysklad/webhook/s/i",
            "http://127.0.0.1:9000/api/remap/1.2"
        )
        .is_ok());
    }
}
