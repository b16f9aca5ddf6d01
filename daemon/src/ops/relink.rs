//! `skladsync relink`: rebuild the link store from both systems by their keys.
//!
//! The rules leave the same marks in both systems whenever they link two things, and these
//! marks survive a lost state directory:
//!
//! | link kind | evidence, strongest first |
//! |---|---|
//! | `order` | the CRM order's custom field `moyskladexternalid` (the МойСклад order id); the МойСклад `customerorder` whose `externalCode` is the CRM order id |
//! | `customer` | the CRM customer's custom field `moyskladexternalid`; the МойСклад `counterparty` whose `externalCode` is `customer-<CRM id>` |
//! | `customer_corporate` | the CRM corporate customer's custom field `moyskladexternalid`; the counterparty whose `externalCode` is `corporate-<CRM id>` |
//!
//! Evidence is believed only when the entity it names exists. For each CRM entity with
//! evidence: a missing link is **added**, a link to another МойСклад entity is **changed**.
//! A link of these kinds whose CRM or МойСклад entity no longer exists is **removed**. A link
//! that no evidence confirms but whose two entities exist (e.g. a counterparty found by
//! phone) is kept. Links of other kinds (payments, demands, moves…) are left alone: their
//! documents are found again by the rules' own lookups.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::clients::moysklad::{ListQuery, MoyskladError};
use crate::clients::retailcrm::{self as crm_client, EntityKind, WriteOptions};
use crate::state::{id_text, Link, StateError, SyncState};
use crate::world::Systems;

/// What can stop a relink.
#[derive(Debug, thiserror::Error)]
pub enum RelinkError {
    /// retailCRM could not be read.
    #[error("retailCRM: {0}")]
    Crm(#[from] crm_client::Error),
    /// МойСклад could not be read.
    #[error("МойСклад: {0}")]
    Moysklad(#[from] MoyskladError),
    /// The state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a relink does to one link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A link is written where there was none.
    Add,
    /// The link points elsewhere now.
    Change,
    /// The link is removed.
    Remove,
}

/// One change of the link store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// What.
    pub action: Action,
    /// The link kind.
    pub kind: String,
    /// The CRM id.
    pub crm: Json,
    /// The МойСклад id (the new one for a change; the linked one for a removal).
    pub moysklad: String,
    /// The МойСклад id linked before (a change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Why.
    pub why: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let crm = id_text(&self.crm).unwrap_or_default();
        match self.action {
            Action::Add => write!(
                f,
                "+ {} crm={crm} moysklad={} ({})",
                self.kind, self.moysklad, self.why
            ),
            Action::Change => write!(
                f,
                "~ {} crm={crm} moysklad={} → {} ({})",
                self.kind,
                self.previous.as_deref().unwrap_or("?"),
                self.moysklad,
                self.why
            ),
            Action::Remove => write!(
                f,
                "- {} crm={crm} moysklad={} ({})",
                self.kind, self.moysklad, self.why
            ),
        }
    }
}

/// One kind of link and where its evidence is.
struct KindSpec {
    kind: &'static str,
    crm: EntityKind,
    crm_name: &'static str,
    ms: &'static str,
    /// The МойСклад `externalCode` of the CRM entity with this id.
    code: fn(&str) -> String,
}

const KINDS: [KindSpec; 3] = [
    KindSpec {
        kind: "order",
        crm: EntityKind::Order,
        crm_name: "order",
        ms: "customerorder",
        code: |id| id.to_string(),
    },
    KindSpec {
        kind: "customer",
        crm: EntityKind::Customer,
        crm_name: "customer",
        ms: "counterparty",
        code: |id| format!("customer-{id}"),
    },
    KindSpec {
        kind: "customer_corporate",
        crm: EntityKind::CustomerCorporate,
        crm_name: "corporate customer",
        ms: "counterparty",
        code: |id| format!("corporate-{id}"),
    },
];

/// The CRM custom field holding the МойСклад id.
const ID_FIELD: &str = "moyskladexternalid";

fn custom_field<'a>(entity: &'a Json, code: &str) -> Option<&'a str> {
    let cf = entity.get("customFields")?;
    let v = match cf {
        Json::Object(m) => m.get(code),
        Json::Array(a) => a
            .iter()
            .find(|f| f.get("code").and_then(Json::as_str) == Some(code))
            .and_then(|f| f.get("value")),
        _ => None,
    }?;
    v.as_str().filter(|s| !s.is_empty())
}

/// Reads both systems and the link store and says what a relink would change.
pub async fn plan(systems: &Systems, state: &SyncState) -> Result<Vec<Change>, RelinkError> {
    let links = state.links()?;
    let mut ms_cache: HashMap<&str, Vec<Json>> = HashMap::new();
    let mut out = Vec::new();
    for spec in &KINDS {
        if !ms_cache.contains_key(spec.ms) {
            let rows = systems.ms.list_all(spec.ms, &ListQuery::new()).await?;
            ms_cache.insert(spec.ms, rows);
        }
        let ms_rows = ms_cache.get(spec.ms).map(Vec::as_slice).unwrap_or_default();
        let ms_ids: HashSet<&str> = ms_rows
            .iter()
            .filter_map(|r| r.get("id").and_then(Json::as_str))
            .collect();
        let by_code: HashMap<&str, &str> = ms_rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.get("externalCode").and_then(Json::as_str)?,
                    r.get("id").and_then(Json::as_str)?,
                ))
            })
            .collect();
        let crm_rows = systems
            .crm
            .list_all(spec.crm, &json!({}), &WriteOptions::default())
            .await?;
        let existing: BTreeMap<String, &Link> = links
            .iter()
            .filter(|l| l.kind == spec.kind)
            .filter_map(|l| Some((id_text(l.ids.get("crm")?)?, l)))
            .collect();
        let mut crm_seen = HashSet::new();
        for row in &crm_rows {
            let Some(crm_id) = row.get("id").filter(|v| v.is_number()) else {
                continue;
            };
            let Some(crm_text) = id_text(crm_id) else {
                continue;
            };
            crm_seen.insert(crm_text.clone());
            let by_field = custom_field(row, ID_FIELD)
                .filter(|id| ms_ids.contains(id))
                .map(|id| {
                    (
                        id.to_string(),
                        format!("the CRM {}'s field {ID_FIELD}", spec.crm_name),
                    )
                });
            let code = (spec.code)(&crm_text);
            let evidence = by_field.or_else(|| {
                by_code.get(code.as_str()).map(|id| {
                    (
                        (*id).to_string(),
                        format!("МойСклад {} externalCode {code}", spec.ms),
                    )
                })
            });
            let linked = existing
                .get(&crm_text)
                .and_then(|l| l.ids.get("moysklad"))
                .and_then(id_text);
            match (evidence, linked) {
                (Some((ms, why)), None) => out.push(Change {
                    action: Action::Add,
                    kind: spec.kind.into(),
                    crm: crm_id.clone(),
                    moysklad: ms,
                    previous: None,
                    why,
                }),
                (Some((ms, why)), Some(old)) if old != ms => out.push(Change {
                    action: Action::Change,
                    kind: spec.kind.into(),
                    crm: crm_id.clone(),
                    moysklad: ms,
                    previous: Some(old),
                    why,
                }),
                (None, Some(old)) if !ms_ids.contains(old.as_str()) => out.push(Change {
                    action: Action::Remove,
                    kind: spec.kind.into(),
                    crm: crm_id.clone(),
                    moysklad: old,
                    previous: None,
                    why: format!("the МойСклад {} is gone", spec.ms),
                }),
                _ => {}
            }
        }
        for (crm_text, link) in &existing {
            if crm_seen.contains(crm_text) {
                continue;
            }
            out.push(Change {
                action: Action::Remove,
                kind: spec.kind.into(),
                crm: link.ids.get("crm").cloned().unwrap_or(Json::Null),
                moysklad: link
                    .ids
                    .get("moysklad")
                    .and_then(id_text)
                    .unwrap_or_default(),
                previous: None,
                why: format!("the CRM {} is gone", spec.crm_name),
            });
        }
    }
    Ok(out)
}

/// Writes the changes to the link store.
pub fn apply(state: &SyncState, changes: &[Change]) -> Result<(), StateError> {
    for c in changes {
        match c.action {
            Action::Add | Action::Change => {
                let mut ids = BTreeMap::new();
                ids.insert("crm".to_string(), c.crm.clone());
                ids.insert("moysklad".to_string(), Json::String(c.moysklad.clone()));
                // Replaces any link of the kind sharing one of the ids.
                state.put_link(&Link {
                    kind: c.kind.clone(),
                    ids,
                })?;
            }
            Action::Remove => {
                if let Some(link) = state.linked(&c.kind, "crm", &c.crm)? {
                    state.remove_link(&link)?;
                }
            }
        }
    }
    state.flush()
}
