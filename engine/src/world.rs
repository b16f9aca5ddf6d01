//! The `World`: everything rules may ask about the systems, answered outside the engine.
//!
//! The runner answers from the live APIs and its state; tests and dry runs answer from a
//! [`RecordedWorld`] read from YAML. Same rules, same code path.

use std::collections::HashMap;

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
    entities: HashMap<String, Vec<Value>>,
    /// (entity key, field, value text) → indexes into `entities[key]`.
    index: HashMap<(String, String, String), Vec<usize>>,
    links: Vec<Value>,
    link_index: HashMap<(String, String, String), usize>,
    reference: HashMap<String, Value>,
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
            if !key.contains('.') {
                return Err(format!(
                    "entity list `{key}` must be named `system.entity`, e.g. `shop.product`"
                ));
            }
            world.entities.insert(key, items);
        }
        for link in file.links {
            world.add_link(link)?;
        }
        world.reference = file.reference.into_iter().collect();
        world.reindex();
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
        for (system, id) in map.iter() {
            if &**system == "kind" {
                continue;
            }
            if let Some(text) = id_text(id) {
                self.link_index
                    .insert((kind.clone(), system.to_string(), text), at);
            }
        }
        self.links.push(link);
        Ok(())
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (key, items) in &self.entities {
            for (i, item) in items.iter().enumerate() {
                let Value::Object(map) = item else { continue };
                for (field, value) in map.iter() {
                    if let Some(text) = id_text(value) {
                        self.index
                            .entry((key.clone(), field.to_string(), text))
                            .or_default()
                            .push(i);
                    }
                }
            }
        }
    }

    /// Adds entities (e.g. from a test) and re-indexes.
    pub fn insert(&mut self, system: &str, entity: &str, item: Value) {
        self.entities
            .entry(format!("{system}.{entity}"))
            .or_default()
            .push(item);
        self.reindex();
    }
}

impl World for RecordedWorld {
    fn find(&self, system: &str, entity: &str, filter: &Map) -> Result<Vec<Value>, WorldError> {
        let key = format!("{system}.{entity}");
        let Some(items) = self.entities.get(&key) else {
            return Ok(Vec::new());
        };
        // Use the index of the first scalar field, then check the rest.
        let mut candidates: Option<&[usize]> = None;
        for (field, value) in filter.iter() {
            if let Some(text) = id_text(value) {
                let hit = self
                    .index
                    .get(&(key.clone(), field.to_string(), text))
                    .map_or(&[][..], Vec::as_slice);
                candidates = Some(hit);
                break;
            }
        }
        let matches = |item: &Value| {
            filter
                .iter()
                .all(|(field, want)| item.get_ref(field).unwrap_or(&Value::Null).equals(want))
        };
        Ok(match candidates {
            Some(idx) => idx
                .iter()
                .filter_map(|&i| items.get(i))
                .filter(|item| matches(item))
                .cloned()
                .collect(),
            None => items.iter().filter(|item| matches(item)).cloned().collect(),
        })
    }

    fn get(&self, system: &str, entity: &str, id: &Value) -> Result<Value, WorldError> {
        let Some(text) = id_text(id) else {
            return Ok(Value::Null);
        };
        let key = format!("{system}.{entity}");
        let Some(items) = self.entities.get(&key) else {
            return Ok(Value::Null);
        };
        Ok(self
            .index
            .get(&(key, "id".to_owned(), text))
            .and_then(|idx| idx.first())
            .and_then(|&i| items.get(i))
            .cloned()
            .unwrap_or_default())
    }

    fn linked(&self, kind: &str, system: &str, id: &Value) -> Result<Value, WorldError> {
        let Some(text) = id_text(id) else {
            return Ok(Value::Null);
        };
        Ok(self
            .link_index
            .get(&(kind.to_owned(), system.to_owned(), text))
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
