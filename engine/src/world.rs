//! The `World`: everything rules may ask about the systems, answered outside the engine.
//!
//! The runner answers from the live APIs and its state; tests and dry runs answer from a
//! [`RecordedWorld`] read from YAML. Same rules, same code path.

use rustc_hash::FxHashMap as HashMap;

use serde::Deserialize;

use crate::value::{Map, Value};

/// A lookup that could not be answered (the system is down, the answer was malformed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorldError(pub String);

/// The questions rules may ask.
pub trait World {
    /// Entities of `system`/`entity` whose top-level fields equal every field of `filter`.
    fn find(&self, system: &str, entity: &str, filter: &Map) -> Result<Vec<Value>, WorldError>;

    /// The entity with this id, or null.
    fn get(&self, system: &str, entity: &str, id: &Value) -> Result<Value, WorldError>;

    /// The link of this kind that has `id` on the side of `system` (an object with one id
    /// per system, and `kind`), or null.
    fn linked(&self, kind: &str, system: &str, id: &Value) -> Result<Value, WorldError>;

    /// Reference data by name (statuses, stores, dictionaries …), or null.
    fn reference(&self, name: &str) -> Result<Value, WorldError>;

    /// The entry `key` of reference data `name` (what `reference(name)[key]` reads), or
    /// null. A world that holds a big book in some other form answers it without building
    /// the whole book (the runner does for `crm.offers`); by default, from [`World::reference`].
    fn reference_entry(&self, name: &str, key: &str) -> Result<Value, WorldError> {
        Ok(match self.reference(name)? {
            Value::Object(book) => book.get(key).cloned().unwrap_or_default(),
            _ => Value::Null,
        })
    }
}

/// A world that knows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyWorld;

impl World for EmptyWorld {
    fn find(&self, _: &str, _: &str, _: &Map) -> Result<Vec<Value>, WorldError> {
        Ok(Vec::new())
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

/// A world recorded in a file:
///
/// ```yaml
/// entities:
///   shop.product:                 # system.entity
///     - {id: 1, sku: A-1, name: Pen}
/// links:
///   - {kind: product, shop: 1, warehouse: p-1}
/// reference:
///   units: [pcs, kg]
/// ```
#[derive(Clone, Debug, Default)]
pub struct RecordedWorld {
    /// system → entity → items with their index.
    entities: HashMap<String, HashMap<String, Entities>>,
    links: Vec<Value>,
    /// kind → side → id text → index into `links`.
    link_index: HashMap<String, HashMap<String, HashMap<String, usize>>>,
    reference: HashMap<String, Value>,
}

/// The items of one entity kind, indexed by every scalar top-level field.
#[derive(Clone, Debug, Default)]
struct Entities {
    items: Vec<Value>,
    /// field → value text → indexes into `items`.
    by_field: HashMap<String, HashMap<String, Vec<usize>>>,
}

impl Entities {
    fn reindex(&mut self) {
        self.by_field.clear();
        for (i, item) in self.items.iter().enumerate() {
            let Value::Object(map) = item else { continue };
            for (field, value) in map.iter() {
                if let Some(text) = id_text(value) {
                    self.by_field
                        .entry(field.to_string())
                        .or_default()
                        .entry(text)
                        .or_default()
                        .push(i);
                }
            }
        }
    }

    /// Candidates for a field's value, without allocating for string values.
    fn candidates(&self, field: &str, value: &Value) -> Option<&[usize]> {
        let by_value = self.by_field.get(field);
        let hit = match value {
            Value::Str(s) => by_value.and_then(|m| m.get(&**s)),
            other => {
                let text = id_text(other)?;
                by_value.and_then(|m| m.get(&text))
            }
        };
        Some(hit.map_or(&[][..], Vec::as_slice))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WorldFile {
    #[serde(default)]
    entities: indexmap::IndexMap<String, Vec<Value>>,
    #[serde(default)]
    links: Vec<Value>,
    #[serde(default)]
    reference: indexmap::IndexMap<String, Value>,
}

/// The text by which ids are compared: `1` and `"1"` are the same id.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(_) | Value::Dec(_) | Value::Bool(_) => Some(v.to_text()),
        _ => None,
    }
}

impl RecordedWorld {
    /// Reads a world from YAML (or JSON) text.
    pub fn from_yaml(text: &str) -> Result<RecordedWorld, String> {
        if text.trim().is_empty() {
            return Ok(RecordedWorld::default());
        }
        let file: WorldFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut world = RecordedWorld::default();
        for (key, items) in file.entities {
            let Some((system, entity)) = key.split_once('.') else {
                return Err(format!(
                    "entity list `{key}` must be named `system.entity`, e.g. `shop.product`"
                ));
            };
            let mut e = Entities {
                items,
                by_field: HashMap::default(),
            };
            e.reindex();
            world
                .entities
                .entry(system.to_owned())
                .or_default()
                .insert(entity.to_owned(), e);
        }
        for link in file.links {
            world.add_link(link)?;
        }
        world.reference = file.reference.into_iter().collect();
        Ok(world)
    }

    /// A world from a value shaped like the file.
    pub fn from_value(v: &Value) -> Result<RecordedWorld, String> {
        if v.is_null() {
            return Ok(RecordedWorld::default());
        }
        RecordedWorld::from_yaml(&v.to_json())
    }

    fn add_link(&mut self, link: Value) -> Result<(), String> {
        let Value::Object(map) = &link else {
            return Err("a link must be a map like `{kind: order, a: 1, b: x}`".to_owned());
        };
        let Some(kind) = map.get("kind").and_then(Value::as_str).map(str::to_owned) else {
            return Err(format!("link {link} has no `kind`"));
        };
        let at = self.links.len();
        let sides = self.link_index.entry(kind).or_default();
        for (system, id) in map.iter() {
            if &**system == "kind" {
                continue;
            }
            if let Some(text) = id_text(id) {
                sides
                    .entry(system.to_string())
                    .or_default()
                    .insert(text, at);
            }
        }
        self.links.push(link);
        Ok(())
    }

    /// Adds an entity (e.g. from a test).
    pub fn insert(&mut self, system: &str, entity: &str, item: Value) {
        let e = self
            .entities
            .entry(system.to_owned())
            .or_default()
            .entry(entity.to_owned())
            .or_default();
        e.items.push(item);
        e.reindex();
    }

    fn kind(&self, system: &str, entity: &str) -> Option<&Entities> {
        self.entities.get(system).and_then(|m| m.get(entity))
    }
}

impl World for RecordedWorld {
    fn find(&self, system: &str, entity: &str, filter: &Map) -> Result<Vec<Value>, WorldError> {
        let Some(e) = self.kind(system, entity) else {
            return Ok(Vec::new());
        };
        let matches = |item: &Value| {
            filter
                .iter()
                .all(|(field, want)| item.get_ref(field).unwrap_or(&Value::Null).equals(want))
        };
        // Use the index of the first scalar field, then check the rest.
        let candidates = filter.iter().find_map(|(f, v)| e.candidates(f, v));
        Ok(match candidates {
            Some(idx) => idx
                .iter()
                .filter_map(|&i| e.items.get(i))
                .filter(|item| matches(item))
                .cloned()
                .collect(),
            None => e
                .items
                .iter()
                .filter(|item| matches(item))
                .cloned()
                .collect(),
        })
    }

    fn get(&self, system: &str, entity: &str, id: &Value) -> Result<Value, WorldError> {
        let Some(e) = self.kind(system, entity) else {
            return Ok(Value::Null);
        };
        Ok(e.candidates("id", id)
            .and_then(|idx| idx.first())
            .and_then(|&i| e.items.get(i))
            .cloned()
            .unwrap_or_default())
    }

    fn linked(&self, kind: &str, system: &str, id: &Value) -> Result<Value, WorldError> {
        let Some(sides) = self.link_index.get(kind).and_then(|k| k.get(system)) else {
            return Ok(Value::Null);
        };
        let at = match id {
            Value::Str(s) => sides.get(&**s),
            other => match id_text(other) {
                Some(t) => sides.get(&t),
                None => None,
            },
        };
        Ok(at
            .and_then(|&i| self.links.get(i))
            .cloned()
            .unwrap_or_default())
    }

    fn reference(&self, name: &str) -> Result<Value, WorldError> {
        Ok(self.reference.get(name).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_world_answers() {
        let w = RecordedWorld::from_yaml(
            "entities:\n  shop.product:\n    - {id: 1, sku: A-1, name: Pen}\n    - {id: 2, sku: B-2, name: Ink}\n\
             links:\n  - {kind: product, shop: 1, warehouse: p-1}\nreference:\n  units: [pcs]\n",
        )
        .unwrap();
        let mut f = Map::default();
        f.insert("sku".into(), Value::str("B-2"));
        let found = w.find("shop", "product", &f).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].get("name"), Value::str("Ink"));
        assert_eq!(
            w.get("shop", "product", &Value::str("1"))
                .unwrap()
                .get("sku"),
            Value::str("A-1")
        );
        assert_eq!(
            w.linked("product", "warehouse", &Value::str("p-1"))
                .unwrap()
                .get("shop"),
            Value::Int(1)
        );
        assert!(w
            .linked("product", "shop", &Value::Int(2))
            .unwrap()
            .is_null());
        assert!(RecordedWorld::from_yaml("entities:\n  product: []\n").is_err());
    }
}
