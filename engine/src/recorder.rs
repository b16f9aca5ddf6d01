//! Recording what a world answered, to replay it.
//!
//! [`Recorder`] wraps any [`World`] and keeps every question asked during an evaluation with
//! its answer. [`Recorder::recording`] turns them into a world document shaped like a
//! [`RecordedWorld`] file (`entities`, `links`, `reference`), so that an event evaluated
//! against a live system can be evaluated again later, offline, against what the system said
//! at the time.
//!
//! A recorded world answers a `find` by matching the filter against the items it holds; a
//! live system may answer differently (a search that normalises phone numbers, say), and
//! items kept for one question may match another one that the live system answered with
//! nothing. So the recording also asks the recorded world every question again and lists the
//! ones whose answer differs ([`Recording::inexact`]): a replay of such an event may differ
//! from what happened live for that reason alone.

use std::sync::Mutex;

use crate::value::{Map, Value};
use crate::world::{RecordedWorld, World, WorldError};

/// One question and its answer.
#[derive(Clone, Debug)]
enum Asked {
    Find {
        system: String,
        entity: String,
        filter: Map,
        answer: Vec<Value>,
    },
    Get {
        system: String,
        entity: String,
        id: Value,
        answer: Value,
    },
    Linked {
        kind: String,
        system: String,
        id: Value,
        answer: Value,
    },
    Reference {
        name: String,
        answer: Value,
    },
    /// `reference(name, key)`: one entry of a book.
    ReferenceEntry {
        name: String,
        key: String,
        answer: Value,
    },
}

/// A world that answers through another one and remembers what it answered.
pub struct Recorder<'w> {
    inner: &'w dyn World,
    asked: Mutex<Vec<Asked>>,
}

/// What a [`Recorder`] saw.
#[derive(Clone, Debug)]
pub struct Recording {
    /// The world document (`entities`, `links`, `reference`), as a case's `world:`.
    pub world: Value,
    /// The questions a replay answers differently from the live world (described).
    pub inexact: Vec<String>,
    /// How many questions were asked.
    pub questions: usize,
}

impl<'w> Recorder<'w> {
    /// Records the answers of `inner`.
    pub fn new(inner: &'w dyn World) -> Recorder<'w> {
        Recorder {
            inner,
            asked: Mutex::new(Vec::new()),
        }
    }

    fn push(&self, a: Asked) {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).push(a);
    }

    /// The recorded world, checked against the answers it must give again.
    pub fn recording(&self) -> Recording {
        let asked = self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let world = world_doc(&asked);
        let mut inexact = Vec::new();
        match RecordedWorld::from_value(&world) {
            Ok(replay) => {
                for a in &asked {
                    if let Some(d) = differs(&replay, a) {
                        inexact.push(d);
                    }
                }
            }
            Err(e) => inexact.push(format!("the recorded world does not read back: {e}")),
        }
        inexact.dedup();
        Recording {
            world,
            inexact,
            questions: asked.len(),
        }
    }
}

/// The identity of an entity item: its `id` as text, or the whole item.
fn identity(item: &Value) -> String {
    match item.get_ref("id") {
        Some(Value::Null) | None => item.to_json(),
        Some(id) => format!("{}:{}", id.type_name(), id.to_json()),
    }
}

fn world_doc(asked: &[Asked]) -> Value {
    // system.entity → items in the order first seen, each once (the latest answer wins).
    let mut entities: Vec<(String, Vec<(String, Value)>)> = Vec::new();
    let mut links: Vec<Value> = Vec::new();
    let mut reference = Map::default();
    let mut add = |key: String, item: &Value| {
        if !matches!(item, Value::Object(_)) {
            return;
        }
        let at = match entities.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                entities.push((key, Vec::new()));
                entities.len() - 1
            }
        };
        let id = identity(item);
        let items = &mut entities[at].1;
        match items.iter_mut().find(|(i, _)| *i == id) {
            Some(slot) => slot.1 = item.clone(),
            None => items.push((id, item.clone())),
        }
    };
    for a in asked {
        match a {
            Asked::Find {
                system,
                entity,
                answer,
                ..
            } => {
                for item in answer {
                    add(format!("{system}.{entity}"), item);
                }
            }
            Asked::Get {
                system,
                entity,
                answer,
                ..
            } => add(format!("{system}.{entity}"), answer),
            Asked::Linked { answer, .. } => {
                if matches!(answer, Value::Object(_)) && !links.contains(answer) {
                    links.push(answer.clone());
                }
            }
            Asked::Reference { name, answer } => {
                reference.insert(name.as_str().into(), answer.clone());
            }
            Asked::ReferenceEntry { .. } => {}
        }
    }
    // Entries asked one by one make a book of those entries, unless the whole book was
    // asked too (it holds them).
    for a in asked {
        if let Asked::ReferenceEntry { name, key, answer } = a {
            let book = match reference.get_mut(name.as_str()) {
                Some(Value::Object(book)) => book,
                Some(_) => continue,
                None => {
                    reference.insert(name.as_str().into(), Value::object(Map::default()));
                    match reference.get_mut(name.as_str()) {
                        Some(Value::Object(book)) => book,
                        _ => continue,
                    }
                }
            };
            if !answer.is_null() {
                std::sync::Arc::make_mut(book).insert(key.as_str().into(), answer.clone());
            }
        }
    }
    let mut ents = Map::default();
    for (key, items) in entities {
        ents.insert(
            key.as_str().into(),
            Value::array(items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()),
        );
    }
    let mut doc = Map::default();
    doc.insert("entities".into(), Value::object(ents));
    doc.insert("links".into(), Value::array(links));
    doc.insert("reference".into(), Value::object(reference));
    Value::object(doc)
}

fn differs(replay: &RecordedWorld, a: &Asked) -> Option<String> {
    let (what, got, want) = match a {
        Asked::Find {
            system,
            entity,
            filter,
            answer,
        } => {
            let got = replay.find(system, entity, filter).map(Value::array);
            (
                format!(
                    "find {system}.{entity} {}",
                    Value::object(filter.clone()).to_json()
                ),
                got,
                Value::array(answer.clone()),
            )
        }
        Asked::Get {
            system,
            entity,
            id,
            answer,
        } => (
            format!("get {system}.{entity} {}", id.to_json()),
            replay.get(system, entity, id),
            answer.clone(),
        ),
        Asked::Linked {
            kind,
            system,
            id,
            answer,
        } => (
            format!("linked {kind} {system} {}", id.to_json()),
            replay.linked(kind, system, id),
            answer.clone(),
        ),
        Asked::Reference { name, answer } => (
            format!("reference {name}"),
            replay.reference(name),
            answer.clone(),
        ),
        Asked::ReferenceEntry { name, key, answer } => (
            format!("reference {name} entry {key}"),
            replay.reference_entry(name, key),
            answer.clone(),
        ),
    };
    match got {
        Ok(v) if v.equals(&want) => None,
        Ok(v) => Some(format!(
            "{what}: live {} item(s), replay {}",
            count(&want),
            count(&v)
        )),
        Err(e) => Some(format!("{what}: {e}")),
    }
}

fn count(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.len(),
        Value::Null => 0,
        _ => 1,
    }
}

impl World for Recorder<'_> {
    fn find(&self, system: &str, entity: &str, filter: &Map) -> Result<Vec<Value>, WorldError> {
        let answer = self.inner.find(system, entity, filter)?;
        self.push(Asked::Find {
            system: system.to_owned(),
            entity: entity.to_owned(),
            filter: filter.clone(),
            answer: answer.clone(),
        });
        Ok(answer)
    }

    fn get(&self, system: &str, entity: &str, id: &Value) -> Result<Value, WorldError> {
        let answer = self.inner.get(system, entity, id)?;
        self.push(Asked::Get {
            system: system.to_owned(),
            entity: entity.to_owned(),
            id: id.clone(),
            answer: answer.clone(),
        });
        Ok(answer)
    }

    fn linked(&self, kind: &str, system: &str, id: &Value) -> Result<Value, WorldError> {
        let answer = self.inner.linked(kind, system, id)?;
        self.push(Asked::Linked {
            kind: kind.to_owned(),
            system: system.to_owned(),
            id: id.clone(),
            answer: answer.clone(),
        });
        Ok(answer)
    }

    fn reference(&self, name: &str) -> Result<Value, WorldError> {
        let answer = self.inner.reference(name)?;
        self.push(Asked::Reference {
            name: name.to_owned(),
            answer: answer.clone(),
        });
        Ok(answer)
    }

    fn reference_entry(&self, name: &str, key: &str) -> Result<Value, WorldError> {
        let answer = self.inner.reference_entry(name, key)?;
        self.push(Asked::ReferenceEntry {
            name: name.to_owned(),
            key: key.to_owned(),
            answer: answer.clone(),
        });
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> RecordedWorld {
        RecordedWorld::from_yaml(
            "entities:\n  shop.product:\n    - {id: 1, sku: A-1, name: Pen}\n    - {id: 2, sku: B-2, name: Ink}\n    - {id: 3, sku: C-3, name: Cap}\n\
             links:\n  - {kind: product, shop: 1, warehouse: p-1}\n  - {kind: product, shop: 3, warehouse: p-3}\n\
             reference:\n  units: [pcs]\n  colours: [red]\n",
        )
        .unwrap_or_default()
    }

    fn filter(k: &str, v: Value) -> Map {
        let mut m = Map::default();
        m.insert(k.into(), v);
        m
    }

    #[test]
    fn keeps_only_what_was_asked_and_answers_it_again() {
        let live = live();
        let rec = Recorder::new(&live);
        let found = rec
            .find("shop", "product", &filter("sku", Value::str("B-2")))
            .unwrap_or_default();
        assert_eq!(found.len(), 1);
        let link = rec
            .linked("product", "shop", &Value::Int(1))
            .unwrap_or_default();
        assert!(!link.is_null());
        let none = rec
            .get("shop", "product", &Value::Int(9))
            .unwrap_or_default();
        assert!(none.is_null());
        let units = rec.reference("units").unwrap_or_default();
        let r = rec.recording();
        assert_eq!(r.questions, 4);
        assert!(r.inexact.is_empty(), "{:?}", r.inexact);
        let replay = RecordedWorld::from_value(&r.world).unwrap_or_default();
        // What was asked is answered as it was…
        let again = replay
            .find("shop", "product", &filter("sku", Value::str("B-2")))
            .unwrap_or_default();
        assert_eq!(Value::array(again), Value::array(found));
        assert!(replay
            .linked("product", "shop", &Value::Int(1))
            .unwrap_or_default()
            .equals(&link));
        assert!(replay.reference("units").unwrap_or_default().equals(&units));
        // …and nothing else was kept.
        assert!(replay
            .get("shop", "product", &Value::Int(1))
            .unwrap_or_default()
            .is_null());
        assert!(replay
            .linked("product", "shop", &Value::Int(3))
            .unwrap_or_default()
            .is_null());
        assert!(replay.reference("colours").unwrap_or_default().is_null());
    }

    /// Entries of a book asked one by one are recorded as a book of those entries (the
    /// others are not kept), and a replay answers them as they were.
    #[test]
    fn keeps_the_reference_entries_asked() {
        let live = RecordedWorld::from_yaml(
            "reference:\n  offers: {a: {id: 1}, b: {id: 2}, c: {id: 3}}\n",
        )
        .unwrap_or_default();
        let rec = Recorder::new(&live);
        let a = rec.reference_entry("offers", "a").unwrap_or_default();
        assert!(a.equals(&Value::from_json(&serde_json::json!({"id": 1}))));
        let missing = rec.reference_entry("offers", "z").unwrap_or_default();
        assert!(missing.is_null());
        let r = rec.recording();
        assert_eq!(r.questions, 2);
        assert!(r.inexact.is_empty(), "{:?}", r.inexact);
        let replay = RecordedWorld::from_value(&r.world).unwrap_or_default();
        assert!(replay
            .reference_entry("offers", "a")
            .unwrap_or_default()
            .equals(&a));
        assert!(replay
            .reference_entry("offers", "z")
            .unwrap_or_default()
            .is_null());
        // Only what was asked.
        assert!(replay
            .reference_entry("offers", "b")
            .unwrap_or_default()
            .is_null());
    }

    /// A live search that matched on something else than field equality cannot be replayed
    /// as it was: the recording says so.
    #[test]
    fn names_the_questions_a_replay_answers_differently() {
        struct Fuzzy;
        impl World for Fuzzy {
            fn find(&self, _: &str, _: &str, _: &Map) -> Result<Vec<Value>, WorldError> {
                let mut m = Map::default();
                m.insert("id".into(), Value::Int(7));
                m.insert("phone".into(), Value::str("+7 903 000-00-01"));
                Ok(vec![Value::object(m)])
            }
            fn get(&self, _: &str, _: &str, _: &Value) -> Result<Value, WorldError> {
                Ok(Value::Null)
            }
            fn linked(&self, _: &str, _: &str, _: &Value) -> Result<Value, WorldError> {
                Ok(Value::Null)
            }
            fn reference(&self, _: &str) -> Result<Value, WorldError> {
                Ok(Value::Null)
            }
        }
        let rec = Recorder::new(&Fuzzy);
        let _ = rec.find(
            "crm",
            "customer",
            &filter("phone", Value::str("79030000001")),
        );
        let r = rec.recording();
        assert_eq!(r.inexact.len(), 1, "{:?}", r.inexact);
        assert!(
            r.inexact[0].contains("find crm.customer"),
            "{:?}",
            r.inexact
        );
    }
}
