//! Lookups gathered across the orders waiting in the inbox (issue 13, lever c).
//!
//! The rules are not read: the runner learns, from the evaluations it runs, which МойСклад
//! lookups of one field (`lookup("moysklad", E, {f: v})`) took their value `v` straight from
//! the event (e.g. `customerorder.externalCode` = the order id, `counterparty.phone` = the
//! order's phone). Before evaluating an order event it asks those lookups for the orders read
//! ahead (see `daemon::prefetch`) in one request per lookup kind — `filter=f=v1;f=v2;…`, which
//! МойСклад takes as an OR — and keeps each value's rows for a short while. A later evaluation
//! asking exactly that lookup gets them without a request.
//!
//! What keeps the answers right:
//! - `=` is an exact match, so the rows of a value are the rows whose field is that value; when
//!   МойСклад returns a row whose field equals none of the values exactly (a match this code
//!   cannot attribute), the whole batch is thrown away;
//! - every МойСклад write the runner makes drops the answers it may change: those of that
//!   entity type whose value the written entity now has (compared loosely: case, spaces and
//!   punctuation ignored) or whose rows hold the written entity; a delete drops the type's;
//! - answers live [`MAX_AGE`] at most (a change made by someone else is seen as late as it
//!   would be by a lookup made that long before).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use crate::clients::moysklad::{ListQuery, MoyskladClient, MoyskladError};

/// How long a gathered answer is used.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Values per request.
pub const MAX_VALUES: usize = 50;
/// How deep a value is looked for in an event.
const MAX_DEPTH: usize = 4;

/// A lookup learned: entity, field, and where its value is in the event's `order`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Template {
    /// The МойСклад entity.
    pub entity: String,
    /// The filter field.
    pub field: String,
    /// The path of the value under the event payload's root object.
    pub path: Vec<String>,
}

type Key = (String, String, String);

/// Where a fetch by id took its id from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdSource {
    /// The value at this path of the event payload.
    Event(Vec<String>),
    /// `linked(kind, system, <value at path>)[field]`.
    Link {
        /// The link kind.
        kind: String,
        /// The side the link was read by.
        system: String,
        /// The path of the id it was read by.
        path: Vec<String>,
        /// The link's side holding the fetched id.
        field: String,
    },
}

/// A fetch by id learned: `fetch("moysklad", entity, <id from source>)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FetchTemplate {
    /// The МойСклад entity.
    pub entity: String,
    /// Where the id comes from.
    pub source: IdSource,
}

/// What an evaluation read by id: МойСклад fetches `(entity, id)` and links
/// `(kind, system, id it was read by, the link as rules saw it)`.
#[derive(Debug, Default)]
pub struct FetchLog {
    /// `fetch("moysklad", entity, id)`, the id as text.
    pub fetches: Vec<(String, String)>,
    /// `linked(kind, system, id)` and its answer (`null` when none).
    pub links: Vec<(String, String, Json, Json)>,
}

#[derive(Debug, Default)]
struct Inner {
    templates: HashMap<String, BTreeSet<Template>>,
    answers: HashMap<Key, (Instant, Vec<Json>)>,
    fetch_templates: HashMap<String, BTreeSet<FetchTemplate>>,
    fetched: HashMap<(String, String), (Instant, Json)>,
    /// Ids asked and not found (or not kept): not asked again for [`MAX_AGE`].
    missed: HashMap<(String, String), Instant>,
}

/// Learned lookups and gathered answers, shared by the worker, the evaluations and the
/// applier.
#[derive(Debug, Default)]
pub struct LookupPrefetch {
    inner: Mutex<Inner>,
}

/// The text of a scalar filter value (strings, numbers); `None` for anything else.
pub fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.is_empty() && !s.contains(';') => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A single-field lookup's field and value text.
pub fn single(filter: &Map<String, Json>) -> Option<(&str, String)> {
    if filter.len() != 1 {
        return None;
    }
    let (k, v) = filter.iter().next()?;
    Some((k.as_str(), scalar_text(v)?))
}

/// Whether a create among `creates` (`(entity, body)`) may make a row one of `lookups`
/// (`(entity, field, value)`, as recorded by an evaluation) would find: same entity type and
/// the body's field loosely the value. A lookup of several fields (recorded with an empty
/// field) may find any create of its type.
pub fn may_find(lookups: &[(String, String, String)], creates: &[(String, Json)]) -> bool {
    lookups.iter().any(|(entity, field, value)| {
        creates.iter().any(|(e, body)| {
            e == entity
                && (field.is_empty()
                    || body
                        .get(field)
                        .and_then(scalar_text)
                        .is_some_and(|t| loose(&t) == loose(value)))
        })
    })
}

/// Whether a change among `changes` (`(entity type, id)`, the id `None` when unknown) may
/// change what one of `fetches` (`(entity, id)`, as recorded by an evaluation) read: the
/// entity itself, or for a document (read with its agent, positions' assortment and
/// customer order expanded) any entity of those types.
pub fn may_change(fetches: &[(String, String)], changes: &[(String, Option<String>)]) -> bool {
    const EMBEDDED: &[&str] = &[
        "counterparty",
        "customerorder",
        "product",
        "variant",
        "service",
        "bundle",
    ];
    fetches.iter().any(|(entity, id)| {
        let document = entity != "counterparty" && !super::lookups::ms_expand(entity).is_empty();
        changes.iter().any(|(e, changed)| {
            (e == entity && changed.as_ref().is_none_or(|c| c == id))
                || (document && e != entity && EMBEDDED.contains(&e.as_str()))
        })
    })
}

fn loose(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn find_paths(
    v: &skladsync_engine::Value,
    want: &str,
    path: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    if path.len() > MAX_DEPTH {
        return;
    }
    match v {
        skladsync_engine::Value::Object(m) => {
            for (k, child) in m.iter() {
                path.push(k.to_string());
                find_paths(child, want, path, out);
                path.pop();
            }
        }
        other => {
            if !path.is_empty() && value_text(other).as_deref() == Some(want) {
                out.push(path.clone());
            }
        }
    }
}

/// [`scalar_text`] of an engine value (the event's payload, read straight into engine
/// values): strings and numbers, with the text `serde_json` gives a number.
fn value_text(v: &skladsync_engine::Value) -> Option<String> {
    use skladsync_engine::Value as V;
    match v {
        V::Str(s) if !s.is_empty() && !s.contains(';') => Some(s.to_string()),
        V::Int(_) | V::Dec(_) => scalar_text(&v.to_serde_json()),
        _ => None,
    }
}

/// Whether an id is the shape of a МойСклад id (a UUID): only those are asked in a filter
/// (`id=` takes UUIDs; anything else would fail the whole request).
pub fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether a row read in a list holds every row of its expanded collections (an expanded
/// `positions` / `accounts` / `contactpersons` cut short is not what a read by id gives).
fn whole(row: &Json) -> bool {
    let Some(m) = row.as_object() else {
        return false;
    };
    m.values().all(|v| {
        let (Some(size), Some(rows)) = (
            v.pointer("/meta/size").and_then(Json::as_u64),
            v.get("rows").and_then(Json::as_array),
        ) else {
            return true;
        };
        u64::try_from(rows.len()).is_ok_and(|n| n >= size)
    })
}

/// The value at `path` in `v`.
pub fn at<'a>(v: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

impl LookupPrefetch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns, from one evaluation of `event` over `root` (the payload's object the values
    /// are looked for in), which of its `lookups` (entity, field, value) took a value of it.
    pub fn learn(
        &self,
        event: &str,
        root: &skladsync_engine::Value,
        lookups: &[(String, String, String)],
    ) {
        let mut found = Vec::new();
        for (entity, field, value) in lookups {
            if field.is_empty() {
                // A lookup of several fields: nothing to gather.
                continue;
            }
            let mut paths = Vec::new();
            find_paths(root, value, &mut Vec::new(), &mut paths);
            for path in paths {
                found.push(Template {
                    entity: entity.clone(),
                    field: field.clone(),
                    path,
                });
            }
        }
        if found.is_empty() {
            return;
        }
        self.lock()
            .templates
            .entry(event.to_string())
            .or_default()
            .extend(found);
    }

    /// The lookups learned for an event.
    pub fn templates(&self, event: &str) -> Vec<Template> {
        self.lock()
            .templates
            .get(event)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A gathered answer to `lookup("moysklad", entity, {field: value})`.
    pub fn answer(&self, entity: &str, field: &str, value: &str) -> Option<Vec<Json>> {
        let key = (entity.to_string(), field.to_string(), value.to_string());
        let mut m = self.lock();
        match m.answers.get(&key) {
            Some((at, rows)) if at.elapsed() < MAX_AGE => Some(rows.clone()),
            Some(_) => {
                m.answers.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether an answer for this value is held.
    fn holds(&self, entity: &str, field: &str, value: &str) -> bool {
        self.answer(entity, field, value).is_some()
    }

    /// Asks МойСклад, in one request, the lookups `entity.field = v` for the `values` not yet
    /// answered (at most [`MAX_VALUES`]), and keeps each value's rows. Returns how many values
    /// were answered.
    pub async fn gather(
        &self,
        ms: &MoyskladClient,
        entity: &str,
        field: &str,
        values: &[String],
    ) -> Result<usize, MoyskladError> {
        let mut wanted: Vec<String> = Vec::new();
        for v in values {
            if wanted.len() >= MAX_VALUES {
                break;
            }
            if !wanted.contains(v) && !self.holds(entity, field, v) {
                wanted.push(v.clone());
            }
        }
        if wanted.len() < 2 {
            return Ok(0);
        }
        let mut q = ListQuery::new();
        for v in &wanted {
            q = q.filter_eq(field, v);
        }
        let asked = Instant::now();
        let rows = ms.list_all(entity, &q).await?;
        let mut by_value: HashMap<&str, Vec<Json>> =
            wanted.iter().map(|v| (v.as_str(), Vec::new())).collect();
        for r in rows {
            let text = r.get(field).and_then(scalar_text);
            match text.as_deref().and_then(|t| by_value.get_mut(t)) {
                Some(list) => list.push(r),
                // A row this code cannot attribute: nothing from this batch is used.
                None => return Ok(0),
            }
        }
        let n = by_value.len();
        let mut m = self.lock();
        for (v, rows) in by_value {
            m.answers.insert(
                (entity.to_string(), field.to_string(), v.to_string()),
                (asked, rows),
            );
        }
        Ok(n)
    }

    /// Learns, from one evaluation of `event` over `root`, which of its МойСклад fetches by id
    /// took their id from the event or from a link read by a value of the event.
    pub fn learn_fetches(&self, event: &str, root: &skladsync_engine::Value, log: &FetchLog) {
        let mut found = Vec::new();
        for (entity, id) in &log.fetches {
            let mut paths = Vec::new();
            find_paths(root, id, &mut Vec::new(), &mut paths);
            for path in paths {
                found.push(FetchTemplate {
                    entity: entity.clone(),
                    source: IdSource::Event(path),
                });
            }
            for (kind, system, by, link) in &log.links {
                let Some(link) = link.as_object() else {
                    continue;
                };
                let Some(by) = scalar_text(by) else { continue };
                for (field, v) in link {
                    if field == "kind" || scalar_text(v).as_deref() != Some(id.as_str()) {
                        continue;
                    }
                    let mut paths = Vec::new();
                    find_paths(root, &by, &mut Vec::new(), &mut paths);
                    for path in paths {
                        found.push(FetchTemplate {
                            entity: entity.clone(),
                            source: IdSource::Link {
                                kind: kind.clone(),
                                system: system.clone(),
                                path,
                                field: field.clone(),
                            },
                        });
                    }
                }
            }
        }
        if found.is_empty() {
            return;
        }
        self.lock()
            .fetch_templates
            .entry(event.to_string())
            .or_default()
            .extend(found);
    }

    /// The fetches by id learned for an event.
    pub fn fetch_templates(&self, event: &str) -> Vec<FetchTemplate> {
        self.lock()
            .fetch_templates
            .get(event)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A gathered answer to `fetch("moysklad", entity, id)`.
    pub fn fetched(&self, entity: &str, id: &str) -> Option<Json> {
        let key = (entity.to_string(), id.to_string());
        let mut m = self.lock();
        match m.fetched.get(&key) {
            Some((at, row)) if at.elapsed() < MAX_AGE => Some(row.clone()),
            Some(_) => {
                m.fetched.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether `id` was asked lately and not found (its fetches ask МойСклад one by one).
    fn missed(&self, entity: &str, id: &str) -> bool {
        self.lock()
            .missed
            .get(&(entity.to_string(), id.to_string()))
            .is_some_and(|at| at.elapsed() < MAX_AGE)
    }

    /// Asks МойСклад, in one request, `entity` by the `ids` not yet answered (at most
    /// [`MAX_VALUES`], UUIDs only) — `filter=id=…;id=…` with the expansions a read by id
    /// has — and keeps each row found. An id not in the answer is not answered (it may be
    /// archived or deleted, which a read by id still returns): its fetch asks МойСклад.
    /// Returns how many ids were answered.
    pub async fn gather_fetches(
        &self,
        ms: &MoyskladClient,
        entity: &str,
        ids: &[String],
    ) -> Result<usize, MoyskladError> {
        let mut wanted: Vec<&str> = Vec::new();
        for id in ids {
            if wanted.len() >= MAX_VALUES {
                break;
            }
            if uuid_like(id)
                && !wanted.contains(&id.as_str())
                && self.fetched(entity, id).is_none()
                && !self.missed(entity, id)
            {
                wanted.push(id);
            }
        }
        if wanted.len() < 2 {
            return Ok(0);
        }
        let mut q = ListQuery::new();
        for id in &wanted {
            q = q.filter_eq("id", id);
        }
        let expand = super::lookups::ms_expand(entity);
        if !expand.is_empty() {
            q = q.expand(&expand.join(","));
        }
        let asked = Instant::now();
        let rows = ms.list_all(entity, &q).await?;
        let mut found = Vec::new();
        for r in rows {
            let id = r.get("id").and_then(Json::as_str).map(str::to_string);
            match id {
                Some(id) if wanted.contains(&id.as_str()) => {
                    if whole(&r) {
                        found.push((id, r));
                    }
                }
                // A row not asked for: nothing from this answer is used.
                _ => return Ok(0),
            }
        }
        let n = found.len();
        let mut m = self.lock();
        m.missed.retain(|_, at| at.elapsed() < MAX_AGE);
        for id in &wanted {
            if !found.iter().any(|(f, _)| f == id) {
                m.missed.insert((entity.to_string(), id.to_string()), asked);
            }
        }
        for (id, row) in found {
            m.fetched.insert((entity.to_string(), id), (asked, row));
        }
        Ok(n)
    }

    /// The runner wrote МойСклад `entity` (its answer: the entity as it is now; `None` for a
    /// delete): drops the answers it may change.
    pub fn ms_wrote(&self, entity: &str, row: Option<&Json>) {
        let mut m = self.lock();
        // Fetches by id: the entity written; the whole type for a write to one of its
        // collections (`counterparty.accounts`, expanded in its reads) or a delete; and
        // every document of another type (their reads expand agent, state, positions,
        // customerOrder: the written entity may be one of them).
        let (base, nested) = match entity.split_once('.') {
            Some((b, _)) => (b, true),
            None => (entity.split('/').next().unwrap_or(entity), false),
        };
        let written = row.and_then(|r| r.get("id")).and_then(Json::as_str);
        m.fetched.retain(|(e, id), _| {
            if e == base {
                !nested && written.is_some_and(|w| w != id)
            } else {
                super::lookups::ms_expand(e).is_empty() || e == "counterparty"
            }
        });
        let entity = entity.split('/').next().unwrap_or(entity);
        let Some(row) = row else {
            m.answers.retain(|(e, _, _), _| e != entity);
            return;
        };
        let id = row.get("id").and_then(Json::as_str);
        m.answers.retain(|(e, field, value), (_, rows)| {
            if e != entity {
                return true;
            }
            let now_matches = row
                .get(field)
                .and_then(scalar_text)
                .is_some_and(|t| loose(&t) == loose(value));
            let holds_it = id.is_some_and(|id| {
                rows.iter()
                    .any(|r| r.get("id").and_then(Json::as_str) == Some(id))
            });
            !now_matches && !holds_it
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_create_beside_conflicts_with_lookups_it_may_answer() {
        let creates = vec![(
            "counterparty".to_string(),
            json!({"name": "Петров Иван", "phone": "+7 900 555-00-01", "email": "p@x.ru"}),
        )];
        let by = |e: &str, f: &str, v: &str| vec![(e.to_string(), f.to_string(), v.to_string())];
        // The created body has the looked-up value (spaces and punctuation ignored).
        assert!(may_find(
            &by("counterparty", "phone", "+79005550001"),
            &creates
        ));
        assert!(may_find(&by("counterparty", "email", "P@X.RU"), &creates));
        // Another value, another field's value, another type: no.
        assert!(!may_find(
            &by("counterparty", "phone", "+79005550002"),
            &creates
        ));
        assert!(!may_find(
            &by("counterparty", "inn", "+79005550001"),
            &creates
        ));
        assert!(!may_find(
            &by("customerorder", "phone", "+79005550001"),
            &creates
        ));
        // A lookup of several fields of the type: it may.
        assert!(may_find(&by("counterparty", "", ""), &creates));
        assert!(!may_find(&[], &creates));
    }

    #[test]
    fn a_change_beside_conflicts_with_fetches_it_may_change() {
        let f = |e: &str, id: &str| vec![(e.to_string(), id.to_string())];
        let c = |e: &str, id: Option<&str>| vec![(e.to_string(), id.map(str::to_string))];
        assert!(may_change(
            &f("counterparty", "a"),
            &c("counterparty", Some("a"))
        ));
        assert!(may_change(
            &f("counterparty", "a"),
            &c("counterparty", None)
        ));
        assert!(!may_change(
            &f("counterparty", "a"),
            &c("counterparty", Some("b"))
        ));
        assert!(!may_change(
            &f("counterparty", "a"),
            &c("customerorder", None)
        ));
        // A document is read with its agent expanded.
        assert!(may_change(
            &f("customerorder", "o"),
            &c("counterparty", Some("a"))
        ));
        assert!(!may_change(
            &f("customerorder", "o"),
            &c("customerorder", Some("p"))
        ));
        assert!(!may_change(&[], &c("counterparty", None)));
    }

    #[test]
    fn learns_where_a_fetch_id_comes_from() {
        let p = LookupPrefetch::default();
        let payload = json!({"order": {"id": 42, "customer": {"id": 7},
            "customFields": {"moyskladexternalid": "11111111-2222-3333-4444-555555555555"}}});
        let cp = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
        let log = FetchLog {
            fetches: vec![
                ("counterparty".into(), cp.into()),
                (
                    "customerorder".into(),
                    "11111111-2222-3333-4444-555555555555".into(),
                ),
                (
                    "demand".into(),
                    "ffffffff-0000-0000-0000-000000000000".into(),
                ),
            ],
            links: vec![(
                "customer".into(),
                "crm".into(),
                json!(7),
                json!({"kind": "customer", "crm": 7, "moysklad": cp}),
            )],
        };
        p.learn_fetches(
            "crm.order.changed",
            &skladsync_engine::Value::from_json(&payload),
            &log,
        );
        let t = p.fetch_templates("crm.order.changed");
        assert!(
            t.contains(&FetchTemplate {
                entity: "counterparty".into(),
                source: IdSource::Link {
                    kind: "customer".into(),
                    system: "crm".into(),
                    path: vec!["order".into(), "customer".into(), "id".into()],
                    field: "moysklad".into(),
                },
            }),
            "{t:?}"
        );
        assert!(t.contains(&FetchTemplate {
            entity: "customerorder".into(),
            source: IdSource::Event(vec![
                "order".into(),
                "customFields".into(),
                "moyskladexternalid".into()
            ]),
        }));
        // An id from neither (a demand of a fetched order): nothing learned.
        assert!(!t.iter().any(|t| t.entity == "demand"));
        assert_eq!(t.len(), 2, "{t:?}");
    }

    #[test]
    fn learns_where_a_lookup_value_comes_from() {
        let p = LookupPrefetch::default();
        let order = json!({"id": 42, "phone": "+79001234567", "customer": {"email": "a@b.ru"}});
        p.learn(
            "crm.order.changed",
            &skladsync_engine::Value::from_json(&order),
            &[
                ("customerorder".into(), "externalCode".into(), "42".into()),
                ("counterparty".into(), "phone".into(), "+79001234567".into()),
                ("counterparty".into(), "email".into(), "a@b.ru".into()),
                ("counterparty".into(), "phone".into(), "89001234567".into()),
            ],
        );
        let t = p.templates("crm.order.changed");
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t.contains(&Template {
            entity: "customerorder".into(),
            field: "externalCode".into(),
            path: vec!["id".into()],
        }));
        assert!(t.iter().any(|t| t.path == ["customer", "email"]));
        assert!(p.templates("other").is_empty());
    }

    #[test]
    fn our_writes_drop_the_answers_they_may_change() {
        let p = LookupPrefetch::default();
        {
            let mut m = p.lock();
            let at = Instant::now();
            for (f, v, rows) in [
                ("phone", "+7 900 111", vec![]),
                (
                    "phone",
                    "+7900222",
                    vec![json!({"id": "c2", "phone": "+7900222"})],
                ),
                ("email", "x@y.ru", vec![]),
            ] {
                m.answers
                    .insert(("counterparty".into(), f.into(), v.into()), (at, rows));
            }
            m.answers.insert(
                ("customerorder".into(), "externalCode".into(), "5".into()),
                (at, vec![]),
            );
        }
        // A new counterparty with that phone (spelt otherwise): its "none" answer goes.
        p.ms_wrote(
            "counterparty",
            Some(&json!({"id": "c9", "phone": "+7900111", "email": "other@y.ru"})),
        );
        assert!(p.answer("counterparty", "phone", "+7 900 111").is_none());
        assert!(p.answer("counterparty", "email", "x@y.ru").is_some());
        // An update of a counterparty an answer holds: that answer goes.
        p.ms_wrote(
            "counterparty",
            Some(&json!({"id": "c2", "phone": "+7900333"})),
        );
        assert!(p.answer("counterparty", "phone", "+7900222").is_none());
        assert!(p.answer("customerorder", "externalCode", "5").is_some());
        // A delete drops the type's answers.
        p.ms_wrote("customerorder", None);
        assert!(p.answer("customerorder", "externalCode", "5").is_none());
        assert!(p.answer("counterparty", "email", "x@y.ru").is_some());
    }
}
