//! The audit (`md/_audit.md`, «Аудит»): every change made through the API or the UI leaves a
//! **context** (one request, or one UI action) holding its **events** (one per entity
//! touched). This is how a client finds deletions without webhooks:
//!
//! * `GET audit` lists contexts, newest first, paged (`limit` ≤ 1000, `offset`), filtered by
//!   `moment` (`>=`, `<=` only), `eventType`, `entityType`, `source`, `uid` and `employee`
//!   (an employee href). As everywhere in the API, the same field with `=` several times is
//!   an OR (`entityType=paymentin;entityType=cashin`) and different fields are ANDed. Any
//!   other field, or another operator on `moment`, is refused with 1034. A context matches
//!   `eventType`/`entityType` when one of its events has it. A context carries `eventType`
//!   and `entityType` only when all its events share them, and `events` as a collection
//!   meta pointing at its events.
//! * `GET audit/<id>/events`: the context's events (`eventType`, `entityType`, `moment`,
//!   `uid`, `source`, `name`, `entity` with the entity's meta — still given after the entity
//!   is gone — and `audit`, the context's meta). Deletion events carry `diff` with the old
//!   `name`.
//! * `GET entity/<type>/<id>/audit`: the events of one entity (also after its deletion).
//! * `GET audit/metadata/filters`: the values `eventType`, `source` and `entityType` take.
//!
//! Not emulated: `diff` of updates (field by field), and contexts of logins, prints, e-mails.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::errors::{self, MsError};
use super::query::{matches, parse_datetime, ListParams, Op, Scalar};
use super::render::collection_meta;
use super::state::{Event, State};

/// The `eventType` values the audit knows (`audit/metadata/filters`).
pub const EVENT_TYPES: &[&str] = &[
    "create",
    "update",
    "delete",
    "puttorecyclebin",
    "restorefromrecyclebin",
    "puttoarchive",
    "restorefromarchive",
    "print",
    "openpublication",
    "closepublication",
    "sendemailfromentity",
    "bulkoperation",
    "replacetoken",
];

/// The `source` values the audit filters by (`audit/metadata/filters`).
pub const SOURCES: &[&str] = &[
    "copy",
    "combine",
    "import",
    "restapi",
    "jsonapi",
    "posapi",
    "retail",
    "connectors",
    "evotor",
    "clearrecyclebin",
    "loginlogout",
    "emailsend",
    "export",
    "phone-1.0",
    "scriptor",
];

/// Where a change came from: the JSON API, or a person in the UI (the emulator's helpers).
pub const SOURCE_API: &str = "jsonapi";
/// A change made in the UI.
pub const SOURCE_APP: &str = "app";

/// One event of a context: one entity created, changed or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// `create`, `update` or `delete`.
    pub event_type: String,
    /// The entity's type (`paymentin`).
    pub entity_type: String,
    /// The entity's href.
    pub href: String,
    /// The entity's id.
    pub id: String,
    /// The entity's `name`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One context: the changes of one request or UI action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditContext {
    /// Context id.
    pub id: String,
    /// Login of the employee who made the change.
    pub uid: String,
    /// The employee's id, if the login is an employee of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee: Option<String>,
    /// `jsonapi`, `app`, …
    pub source: String,
    /// When (account time, to the second as the audit writes it).
    pub moment: String,
    /// Its events, in order.
    pub events: Vec<AuditEvent>,
}

/// The audit `eventType` of a webhook action.
fn event_type(action: &str) -> &'static str {
    match action {
        "CREATE" => "create",
        "DELETE" => "delete",
        _ => "update",
    }
}

impl State {
    /// Records the audit context of a change (`events` of one request or UI action); returns
    /// its id, or `None` when nothing changed.
    pub fn record_audit(
        &mut self,
        events: &[Event],
        uid: &str,
        source: &str,
        now: NaiveDateTime,
    ) -> Option<String> {
        if events.is_empty() {
            return None;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let events = events
            .iter()
            .map(|e| AuditEvent {
                event_type: event_type(&e.action).to_string(),
                entity_type: e.entity_type.clone(),
                href: e.href.clone(),
                id: e.id.clone(),
                name: e.name.clone().or_else(|| {
                    self.get(&e.entity_type, &e.id)
                        .and_then(|v| v["name"].as_str())
                        .map(str::to_string)
                }),
            })
            .collect();
        let employee = self.employee_by_uid(uid);
        self.audit.push(AuditContext {
            id: id.clone(),
            uid: uid.to_string(),
            employee,
            source: source.to_string(),
            moment: now.format("%Y-%m-%d %H:%M:%S").to_string(),
            events,
        });
        Some(id)
    }

    fn audit_meta(&self, id: &str) -> Value {
        json!({
            "href": format!("{}/audit/{id}", self.base_url),
            "type": "audit",
            "mediaType": "application/json"
        })
    }

    /// A context as `GET audit` lists it.
    fn render_context(&self, c: &AuditContext) -> Value {
        let mut v = json!({
            "meta": self.audit_meta(&c.id),
            "id": c.id,
            "uid": c.uid,
            "source": c.source,
            "moment": c.moment,
            "objectCount": c.events.len(),
            "events": {"meta": {
                "href": format!("{}/audit/{}/events", self.base_url, c.id),
                "type": "auditevent",
                "mediaType": "application/json",
                "size": c.events.len(),
                "limit": 1000,
                "offset": 0
            }}
        });
        let same = |f: fn(&AuditEvent) -> &str| {
            let first = c.events.first().map(f)?;
            c.events.iter().all(|e| f(e) == first).then_some(first)
        };
        if let Some(t) = same(|e| e.event_type.as_str()) {
            v["eventType"] = json!(t);
        }
        if let Some(t) = same(|e| e.entity_type.as_str()) {
            v["entityType"] = json!(t);
        }
        v
    }

    /// An event as `GET audit/<id>/events` lists it.
    fn render_event(&self, c: &AuditContext, e: &AuditEvent) -> Value {
        let mut v = json!({
            "source": c.source,
            "eventType": e.event_type,
            "entityType": e.entity_type,
            "uid": c.uid,
            "moment": c.moment,
            "audit": {"meta": self.audit_meta(&c.id)},
            "entity": {"meta": self.entity_meta(&e.entity_type, &e.id)}
        });
        if let Some(n) = &e.name {
            v["name"] = json!(n);
            if e.event_type == "delete" {
                v["diff"] = json!({"name": {"oldValue": n}});
            }
        }
        v
    }
}

/// Checks one condition of an audit filter: the fields and operators the audit accepts.
fn check_condition(field: &str, op: Op, value: &str) -> Result<(), MsError> {
    match field {
        "moment" => {
            if !matches!(op, Op::Ge | Op::Le) {
                return Err(errors::filter_error(
                    "для поля 'moment' допустимы только операторы '>=' и '<='",
                ));
            }
            if parse_datetime(value).is_none() {
                return Err(errors::filter_date_error("moment"));
            }
            Ok(())
        }
        "eventType" | "source" | "uid" | "entityType" | "employee" => {
            if op != Op::Eq {
                return Err(errors::filter_error(&format!(
                    "для поля '{field}' допустим только оператор '='"
                )));
            }
            let known: Option<&[&str]> = match field {
                "eventType" => Some(EVENT_TYPES),
                "source" => Some(SOURCES),
                _ => None,
            };
            if let Some(known) = known {
                if !known.contains(&value) {
                    return Err(errors::filter_error(&format!(
                        "неизвестное значение '{value}' поля '{field}'"
                    )));
                }
            }
            Ok(())
        }
        _ => Err(errors::filter_unknown_field(field)),
    }
}

/// `GET audit`: contexts, newest first.
pub fn list_contexts(
    state: &State,
    href: &str,
    query: &[(String, String)],
) -> Result<Value, MsError> {
    let params = ListParams::from_query(query)?;
    for c in &params.filter {
        check_condition(&c.field, c.op, &c.value)?;
    }
    let mut rows = Vec::new();
    for c in state.audit.iter().rev() {
        let mut lookup = |field: &str| -> Vec<Scalar> {
            match field {
                "moment" => vec![Scalar::Str(c.moment.clone())],
                "uid" => vec![Scalar::Str(c.uid.clone())],
                "source" => vec![Scalar::Str(c.source.clone())],
                "employee" => c.employee.iter().map(|e| Scalar::Str(e.clone())).collect(),
                "eventType" => c
                    .events
                    .iter()
                    .map(|e| Scalar::Str(e.event_type.clone()))
                    .collect(),
                "entityType" => c
                    .events
                    .iter()
                    .map(|e| Scalar::Str(e.entity_type.clone()))
                    .collect(),
                _ => vec![],
            }
        };
        if matches(&params.filter, &mut lookup)? {
            rows.push(c);
        }
    }
    let size = rows.len();
    let page: Vec<Value> = rows
        .into_iter()
        .skip(params.offset)
        .take(params.limit)
        .map(|c| state.render_context(c))
        .collect();
    Ok(json!({
        "context": state.context(),
        "meta": collection_meta(href, query, "audit", size, params.limit, params.offset),
        "rows": page
    }))
}

/// `GET audit/<id>/events`.
pub fn context_events(
    state: &State,
    id: &str,
    href: &str,
    query: &[(String, String)],
) -> Result<Value, MsError> {
    let params = ListParams::from_query(query)?;
    if let Some(c) = params.filter.first() {
        return Err(errors::filter_unknown_field(&c.field));
    }
    let c = state
        .audit
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| errors::not_found("audit", id))?;
    let rows: Vec<Value> = c.events.iter().map(|e| state.render_event(c, e)).collect();
    Ok(page_of(state, href, query, &params, rows))
}

/// `GET entity/<type>/<id>/audit`: the events of one entity, newest first.
pub fn entity_events(
    state: &State,
    ty: &str,
    id: &str,
    href: &str,
    query: &[(String, String)],
) -> Result<Value, MsError> {
    let params = ListParams::from_query(query)?;
    if let Some(c) = params.filter.first() {
        return Err(errors::filter_unknown_field(&c.field));
    }
    let mut rows = Vec::new();
    for c in state.audit.iter().rev() {
        for e in c
            .events
            .iter()
            .filter(|e| e.entity_type == ty && e.id == id)
        {
            rows.push(state.render_event(c, e));
        }
    }
    if rows.is_empty() && state.get(ty, id).is_none() {
        return Err(errors::not_found(ty, id));
    }
    Ok(page_of(state, href, query, &params, rows))
}

fn page_of(
    state: &State,
    href: &str,
    query: &[(String, String)],
    params: &ListParams,
    rows: Vec<Value>,
) -> Value {
    let size = rows.len();
    let page: Vec<Value> = rows
        .into_iter()
        .skip(params.offset)
        .take(params.limit)
        .collect();
    json!({
        "context": state.context(),
        "meta": collection_meta(href, query, "auditevent", size, params.limit, params.offset),
        "rows": page
    })
}

/// `GET audit/metadata/filters`.
pub fn filters() -> Value {
    let mut types: Vec<&str> = super::kinds::KINDS.iter().map(|k| k.name).collect();
    types.sort_unstable();
    json!({"source": SOURCES, "entitytype": types, "eventtype": EVENT_TYPES})
}
