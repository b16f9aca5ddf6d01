//! JSON Schemas for editors: rule files (from the engine's types) and the settings file
//! (from the documented settings file itself, so no setting is named in Rust).
//!
//! The settings schema is read off `settings.example.yaml`: every key becomes a property
//! whose type is that of its default, whose description is the comment above it (and the
//! one after it on its line), and whose allowed values, for a text default, are the
//! alternatives a comment lists as `a | b | c` when the default is one of them. A map with
//! keys lists them all (no others allowed); an empty map allows any key. An optional
//! `settings.schema.yaml` beside it adds to any property by its dotted path, e.g.
//! `shop.kinds: {additionalProperties: {enum: [small, large]}}`.

use std::collections::HashMap;

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value as J};
use skladsync_engine::ruleset::model::RuleFile;
use skladsync_engine::ruleset::settings_shape::{alternatives, merge};
use yaml_rust2::scanner::TScalarStyle;

use super::fmt::tree::{self, Comments, Kind, Line, Node};

/// The JSON Schema of a test case file.
pub fn case_schema() -> J {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<skladsync_engine::case::CaseFile>();
    schema.to_value()
}

/// The JSON Schema of a rule file.
pub fn rules_schema() -> J {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RuleFile>();
    let mut v = schema.to_value();
    if let Some(m) = v.as_object_mut() {
        m.insert("title".into(), json!("skladsync rule file"));
    }
    v
}

fn comment_text(lines: Option<&Vec<Line>>) -> Vec<String> {
    lines
        .map(|ls| {
            ls.iter()
                .filter_map(|l| match l {
                    Line::Comment(c) if !c.starts_with("# yaml-language-server:") => {
                        Some(c.trim_start_matches('#').trim().to_owned())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Gen<'a> {
    comments: &'a Comments,
    anchors: HashMap<String, J>,
}

impl Gen<'_> {
    fn node(&mut self, node: &Node, description: &[String]) -> J {
        let mut s = match &node.kind {
            Kind::Alias(a) => self.anchors.get(a).cloned().unwrap_or_else(|| json!({})),
            Kind::Scalar(sc) => {
                let value: serde_yaml::Value = if sc.style == TScalarStyle::Plain {
                    serde_yaml::from_str(&sc.value)
                        .unwrap_or(serde_yaml::Value::String(sc.value.clone()))
                } else {
                    serde_yaml::Value::String(sc.value.clone())
                };
                let default = serde_json::to_value(&value).unwrap_or(J::Null);
                match &value {
                    serde_yaml::Value::Null => json!({"default": null}),
                    serde_yaml::Value::Bool(_) => json!({"type": "boolean", "default": default}),
                    serde_yaml::Value::Number(_) => json!({"type": "number", "default": default}),
                    serde_yaml::Value::String(text) => {
                        let alts = alternatives(&description.join(" "));
                        if alts.contains(text) {
                            json!({"type": "string", "enum": alts, "default": default})
                        } else {
                            json!({"type": "string", "default": default})
                        }
                    }
                    _ => json!({}),
                }
            }
            Kind::Seq(items, _) => {
                let mut s = json!({"type": "array"});
                let types: Vec<J> = items
                    .iter()
                    .map(|i| self.node(i, &[]).get("type").cloned().unwrap_or(J::Null))
                    .collect();
                if let Some(first) = types.first() {
                    if !first.is_null() && types.iter().all(|t| t == first) {
                        s["items"] = json!({"type": first});
                    }
                }
                s
            }
            Kind::Map(entries, _) if entries.is_empty() => json!({"type": "object"}),
            Kind::Map(entries, _) => {
                let mut props = Map::new();
                let mut required = Vec::new();
                for (k, v) in entries {
                    let Kind::Scalar(key) = &k.kind else { continue };
                    let mut desc = comment_text(self.comments.leading.get(&k.id));
                    if let Some(t) = self.comments.trailing.get(&k.id) {
                        desc.push(t.text.trim_start_matches('#').trim().to_owned());
                    }
                    let mut child = self.node(v, &desc);
                    if !desc.is_empty() {
                        if let Some(m) = child.as_object_mut() {
                            m.insert("description".into(), json!(desc.join(" ")));
                        }
                    }
                    props.insert(key.value.clone(), child);
                    required.push(json!(key.value));
                }
                json!({
                    "type": "object",
                    "properties": props,
                    "required": required,
                    "additionalProperties": false,
                })
            }
        };
        if let Some(a) = &node.anchor {
            if let Some(m) = s.as_object_mut() {
                m.remove("description");
            }
            self.anchors.insert(a.clone(), s.clone());
        }
        s.take()
    }
}

/// The JSON Schema of a settings file, made from a documented example of it and optional
/// declared additions (`settings.schema.yaml`: dotted path → schema to merge in).
pub fn settings_schema(example: &str, additions: Option<&str>) -> Result<J, String> {
    let tree = tree::parse(example).map_err(|e| e.to_string())?;
    let mut gen = Gen {
        comments: &tree.comments,
        anchors: HashMap::new(),
    };
    let mut body = match &tree.root {
        Some(root) => gen.node(root, &[]),
        None => json!({"type": "object"}),
    };
    if let Some(text) = additions {
        let adds: serde_yaml::Mapping = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        for (path, fragment) in adds {
            let path = path
                .as_str()
                .ok_or("settings.schema.yaml: keys are dotted paths")?;
            let fragment = serde_json::to_value(&fragment).map_err(|e| e.to_string())?;
            let mut at = &mut body;
            for seg in path.split('.') {
                at = at
                    .get_mut("properties")
                    .and_then(|p| p.get_mut(seg))
                    .ok_or_else(|| format!("settings.schema.yaml: no setting `{path}`"))?;
            }
            merge(at, &fragment);
        }
    }
    let mut top = Map::new();
    top.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    top.insert("title".into(), json!("skladsync settings"));
    let header = comment_text(Some(&tree.comments.header));
    if !header.is_empty() {
        top.insert("description".into(), json!(header.join(" ")));
    }
    if let J::Object(m) = body {
        top.extend(m);
    }
    Ok(J::Object(top))
}

/// A schema as the shipped file holds it.
pub fn to_text(schema: &J) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_from_comments() {
        assert_eq!(
            alternatives("Type (X-1): per_customer | single | per_shop."),
            ["per_customer", "single", "per_shop"]
        );
        assert_eq!(
            alternatives("exact (the reference) | digits (+7)"),
            ["exact", "digits"]
        );
        assert!(alternatives("no bar here").is_empty());
    }

    /// The shape `check` and the daemon hold a settings file to (read off the example by
    /// the engine) is the schema editors get, descriptions and defaults aside.
    #[test]
    fn the_engine_checks_the_shipped_schema() {
        fn strip(v: &mut J) {
            if let J::Object(m) = v {
                for k in ["description", "default", "title", "$schema"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let rules = root.join("rules");
        let example = std::fs::read_to_string(rules.join("settings.example.yaml")).unwrap();
        let mut ours = settings_schema(&example, None).unwrap();
        strip(&mut ours);
        let shape = skladsync_engine::RuleSet::shape_of(&rules)
            .unwrap()
            .unwrap();
        assert_eq!(&ours, shape.schema());
    }

    #[test]
    fn settings_schema_from_an_example() {
        let s = settings_schema(
            "# Header.\n\n# The mode: fast | slow.\nmode: fast\nlimits:\n  # How many.\n  max: 3\n  list: [a, b]\nmap: {}\n",
            Some("limits.max: {minimum: 1}\n"),
        )
        .unwrap();
        assert_eq!(s["description"], "Header.");
        assert_eq!(s["properties"]["mode"]["enum"], json!(["fast", "slow"]));
        assert_eq!(
            s["properties"]["limits"]["properties"]["max"]["type"],
            "number"
        );
        assert_eq!(s["properties"]["limits"]["properties"]["max"]["minimum"], 1);
        assert_eq!(
            s["properties"]["limits"]["properties"]["max"]["description"],
            "How many."
        );
        assert_eq!(
            s["properties"]["limits"]["properties"]["list"]["items"]["type"],
            "string"
        );
        assert_eq!(s["properties"]["map"], json!({"type": "object"}));
        assert_eq!(s["additionalProperties"], false);
    }
}
