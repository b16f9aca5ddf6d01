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
    (chrono::Utc::now() + chrono::Duration::hours(3) - chrono::Duration::minutes(minutes))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn str_of<'a>(v: &'a Json, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Json::as_str)
}

impl Daemon {
    /// МойСклад entity types some rule listens to, with the actions.
    pub(super) fn ms_listened(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for name in &self.inner.listened {
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

    /// Polls every listened entity type for changes since its watermark and queues them.
    /// Returns how many were queued. Deletions are seen only through webhooks.
    pub async fn reconcile(&self) -> Result<usize, DaemonError> {
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
            queued += works.len();
            self.enqueue(works)?;
            state.set_cursor(&name, &json!(max))?;
        }
        Ok(queued)
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

    /// Registers the webhooks the rules need and removes ours (same secret path) that are no
    /// longer needed or point at an old address.
    pub(super) async fn register_webhooks(&self) -> Result<usize, ApplyError> {
        let Some(url) = self.inner.webhook_url.as_deref() else {
            return Ok(0);
        };
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
        let existing = ms.webhooks().await?;
        // Ours: the same secret path (an earlier address of this runner included).
        let suffix = url.rfind("/moysklad/webhook/").map_or(url, |i| &url[i..]);
        let ours: Vec<&Json> = existing
            .iter()
            .filter(|h| str_of(h, "url").is_some_and(|u| u.ends_with(suffix)))
            .collect();
        let mut made = 0;
        for h in &ours {
            let (Some(e), Some(a)) = (str_of(h, "entityType"), str_of(h, "action")) else {
                continue;
            };
            let current = str_of(h, "url") == Some(url);
            let needed = wanted.iter().any(|(we, wa)| we == e && *wa == a);
            if !(current && needed) {
                if let Some(id) = str_of(h, "id").or_else(|| {
                    h.pointer("/meta/href")
                        .and_then(Json::as_str)
                        .and_then(id_from_href)
                }) {
                    ms.delete_webhook(id).await?;
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
                    .await?;
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
