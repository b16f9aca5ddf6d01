//! Typed settings: the shape a settings file must have, read off the rule set's documented
//! example settings file (`settings.example.yaml` beside the rules), and the check of a
//! settings file against it.
//!
//! The shape is a JSON Schema (draft-07 keywords `type`, `enum`, `properties`, `required`,
//! `additionalProperties`, `items`, `minimum`, `maximum`; others are ignored) made the way
//! `skladsync schema` makes `schema/settings.schema.json` from the same example: every key
//! is required and has the type of its example value; a map with keys allows no others, an
//! empty map allows any key; a list's items have the type its example items share; a `null`
//! allows anything; a text whose comment lists alternatives as `a | b | c` (the example's
//! value among them) allows only those. An optional `settings.schema.yaml` beside the
//! example adds to any property by its dotted path.
//!
//! The check reports every mismatch at the settings file's own line and column, before any
//! rule is compiled: the rules then only ever see a settings tree that matched.

use std::sync::Arc;

use serde_json::{json, Map, Value as J};
use yaml_rust2::scanner::TScalarStyle;

use super::yaml::{MarkedFile, Seg, YNode};
use crate::compile::scope::suggest;
use crate::diagnostic::{codes, Diagnostic, Location, SourceFile};
use crate::value::Value;

/// The shape settings files must have.
#[derive(Clone, Debug)]
pub struct SettingsShape {
    schema: J,
    example: String,
}

impl SettingsShape {
    /// Reads the shape off a documented example settings file (`name` as shown in
    /// diagnostics), with optional additions (`settings.schema.yaml`: dotted path → schema
    /// to merge in).
    pub fn from_example(
        name: &str,
        text: &str,
        additions: Option<&str>,
    ) -> Result<SettingsShape, Diagnostic> {
        let source = Arc::new(SourceFile {
            name: name.to_owned(),
            text: text.to_owned(),
        });
        let marked = MarkedFile::parse(source.clone()).map_err(|e| {
            Diagnostic::error(
                codes::YAML,
                format!("the example settings file is not valid YAML: {}", e.message),
            )
            .at(Some(Location {
                file: source.clone(),
                start: e.at,
                end: e.at + 1,
            }))
        })?;
        let mut schema = if text.trim().is_empty() {
            json!({"type": "object"})
        } else {
            node_schema(&source.text, &marked.root, "")
        };
        if let Some(adds) = additions {
            add(&mut schema, adds).map_err(|e| {
                Diagnostic::error(codes::SHAPE, format!("settings.schema.yaml: {e}"))
            })?;
        }
        Ok(SettingsShape {
            schema,
            example: name.to_owned(),
        })
    }

    /// The shape as a JSON Schema (without descriptions and defaults).
    pub fn schema(&self) -> &J {
        &self.schema
    }

    /// Every way `settings` (read from `marked`) does not have the shape.
    pub fn check(&self, settings: &Value, marked: &MarkedFile) -> Vec<Diagnostic> {
        self.check_in(settings, Some(marked))
    }

    /// Every way settings that come from no file (a case's overrides merged in) do not have
    /// the shape; the diagnostics have no location.
    pub fn check_value(&self, settings: &Value) -> Vec<Diagnostic> {
        self.check_in(settings, None)
    }

    fn check_in(&self, settings: &Value, marked: Option<&MarkedFile>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        Checker {
            marked,
            example: &self.example,
            out: &mut out,
        }
        .walk(settings, &self.schema, &mut path);
        out
    }
}

/// The comment lines right above the line of byte `at` (no blank line between), and the
/// comment at the end of that line.
fn comments_of(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let mut above = Vec::new();
    let mut cursor = line_start;
    while cursor > 0 {
        let prev_start = text[..cursor - 1].rfind('\n').map_or(0, |i| i + 1);
        let line = text[prev_start..cursor - 1].trim();
        if !line.starts_with('#') || line.starts_with("# yaml-language-server:") {
            break;
        }
        above.push(line.trim_start_matches('#').trim().to_owned());
        cursor = prev_start;
    }
    above.reverse();
    if let Some(i) = text[at..line_end].find(" #") {
        above.push(text[at + i + 2..line_end].trim().to_owned());
    }
    above.join(" ")
}

/// The alternatives a comment lists as `a | b | c`.
pub fn alternatives(text: &str) -> Vec<String> {
    let parts: Vec<&str> = text.split('|').collect();
    if parts.len() < 2 {
        return Vec::new();
    }
    let word = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect()
    };
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let p = if i == 0 {
            p.rsplit(": ").next().unwrap_or(p)
        } else {
            p
        };
        let w = word(p);
        if w.is_empty() {
            return Vec::new();
        }
        out.push(w);
    }
    out
}

/// The JSON type of a plain or quoted scalar, as YAML reads it.
fn scalar_value(text: &str, style: TScalarStyle) -> serde_yaml::Value {
    if style == TScalarStyle::Plain {
        serde_yaml::from_str(text).unwrap_or(serde_yaml::Value::String(text.to_owned()))
    } else {
        serde_yaml::Value::String(text.to_owned())
    }
}

fn node_schema(text: &str, node: &YNode, comment: &str) -> J {
    match node {
        YNode::Scalar {
            text: value, style, ..
        } => match scalar_value(value, *style) {
            serde_yaml::Value::Bool(_) => json!({"type": "boolean"}),
            serde_yaml::Value::Number(_) => json!({"type": "number"}),
            serde_yaml::Value::String(s) => {
                let alts = alternatives(comment);
                if alts.contains(&s) {
                    json!({"type": "string", "enum": alts})
                } else {
                    json!({"type": "string"})
                }
            }
            _ => json!({}),
        },
        YNode::Seq { items, .. } => {
            let mut s = json!({"type": "array"});
            let types: Vec<J> = items
                .iter()
                .map(|i| {
                    node_schema(text, i, "")
                        .get("type")
                        .cloned()
                        .unwrap_or(J::Null)
                })
                .collect();
            if let Some(first) = types.first() {
                if !first.is_null() && types.iter().all(|t| t == first) {
                    s["items"] = json!({"type": first});
                }
            }
            s
        }
        YNode::Map { entries, .. } if entries.is_empty() => json!({"type": "object"}),
        YNode::Map { entries, .. } => {
            let mut props = Map::new();
            let mut required = Vec::new();
            for (key, key_at, value) in entries {
                let comment = comments_of(text, *key_at);
                props.insert(key.clone(), node_schema(text, value, &comment));
                required.push(json!(key));
            }
            json!({
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": false,
            })
        }
    }
}

/// Merges `over` into `base`, key by key (objects), replacing the rest.
pub fn merge(base: &mut J, over: &J) {
    match (base, over) {
        (J::Object(b), J::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Merges the additions of a `settings.schema.yaml` (dotted path → schema) into a schema.
pub fn add(schema: &mut J, additions: &str) -> Result<(), String> {
    let adds: serde_yaml::Mapping = serde_yaml::from_str(additions).map_err(|e| e.to_string())?;
    for (path, fragment) in adds {
        let path = path.as_str().ok_or("keys are dotted paths")?;
        let fragment = serde_json::to_value(&fragment).map_err(|e| e.to_string())?;
        let mut at = &mut *schema;
        for seg in path.split('.') {
            at = at
                .get_mut("properties")
                .and_then(|p| p.get_mut(seg))
                .ok_or_else(|| format!("no setting `{path}`"))?;
        }
        merge(at, &fragment);
    }
    Ok(())
}

struct Checker<'a> {
    marked: Option<&'a MarkedFile>,
    example: &'a str,
    out: &'a mut Vec<Diagnostic>,
}

fn dotted(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// How a value is named in a message: its type, and the value when it is short.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Int(_) | Value::Dec(_) => format!("the number `{}`", v.to_json()),
        Value::Str(s) if s.chars().count() <= 40 => format!("the text \"{s}\""),
        Value::Str(_) => "a text".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a map".to_owned(),
        Value::Ref(_) => "a reference".to_owned(),
    }
}

fn matches_type(v: &Value, ty: &str) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => matches!(v, Value::Bool(_)),
        "number" => matches!(v, Value::Int(_) | Value::Dec(_)),
        "integer" => matches!(v, Value::Int(_)),
        "string" => matches!(v, Value::Str(_)),
        "array" => matches!(v, Value::Array(_)),
        "object" => matches!(v, Value::Object(_)),
        _ => true,
    }
}

fn type_name(ty: &str) -> &str {
    match ty {
        "boolean" => "a boolean (`true` or `false`)",
        "number" => "a number",
        "integer" => "a whole number",
        "string" => "a text",
        "array" => "a list",
        "object" => "a map",
        "null" => "null",
        other => other,
    }
}

impl Checker<'_> {
    fn at_value(&self, path: &[Seg]) -> Option<Location> {
        self.marked.map(|m| m.locate(path))
    }

    fn at_key(&self, path: &[Seg]) -> Option<Location> {
        self.marked.map(|m| m.locate_key(path))
    }

    fn walk(&mut self, v: &Value, schema: &J, path: &mut Vec<Seg>) {
        let Some(schema) = schema.as_object() else {
            return;
        };
        let name = dotted(path);
        let shown = if name.is_empty() {
            "the settings file".to_owned()
        } else {
            format!("`{name}`")
        };
        if let Some(ty) = schema.get("type") {
            let types: Vec<&str> = match ty {
                J::String(s) => vec![s.as_str()],
                J::Array(a) => a.iter().filter_map(J::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.is_empty() && !types.iter().any(|t| matches_type(v, t)) {
                let wanted: Vec<&str> = types.iter().map(|t| type_name(t)).collect();
                let mut d = Diagnostic::error(
                    codes::SETTING_TYPE,
                    format!(
                        "{shown} must be {}, not {}",
                        wanted.join(" or "),
                        describe(v)
                    ),
                )
                .at(self.at_value(path))
                .label(format!("expected {}", wanted.join(" or ")));
                if let Some(h) = type_hint(v, &types) {
                    d = d.note(format!("help: {h}"));
                }
                self.out.push(d.note(format!(
                    "note: the settings have the shape of {}; see schema/settings.schema.json",
                    self.example
                )));
                return;
            }
        }
        if let Some(J::Array(allowed)) = schema.get("enum") {
            let as_json = v.to_serde_json();
            if !allowed.contains(&as_json) {
                let names: Vec<String> = allowed
                    .iter()
                    .map(|a| match a {
                        J::String(s) => format!("`{s}`"),
                        other => format!("`{other}`"),
                    })
                    .collect();
                let mut d = Diagnostic::error(
                    codes::SETTING_VALUE,
                    format!(
                        "{shown} must be one of {}, not {}",
                        names.join(", "),
                        describe(v)
                    ),
                )
                .at(self.at_value(path))
                .label("not one of the allowed values");
                if let Value::Str(s) = v {
                    let texts: Vec<&str> = allowed.iter().filter_map(J::as_str).collect();
                    if let Some(h) = suggest(s, texts) {
                        d = d.note(format!("help: did you mean `{h}`?"));
                    }
                }
                self.out.push(d);
            }
        }
        for (key, cmp) in [("minimum", 1i8), ("maximum", -1i8)] {
            if let (Some(limit), Some(n)) = (
                schema.get(key).and_then(J::as_f64),
                v.to_serde_json().as_f64(),
            ) {
                let bad = if cmp > 0 { n < limit } else { n > limit };
                if bad {
                    self.out.push(
                        Diagnostic::error(
                            codes::SETTING_VALUE,
                            format!("{shown} must be at {key} {limit}, not {n}"),
                        )
                        .at(self.at_value(path))
                        .label(format!("out of range ({key} {limit})")),
                    );
                }
            }
        }
        match v {
            Value::Object(map) => self.walk_map(map, schema, path),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        self.walk(item, item_schema, path);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }

    fn walk_map(&mut self, map: &crate::value::Map, schema: &Map<String, J>, path: &mut Vec<Seg>) {
        let props = schema.get("properties").and_then(J::as_object);
        let closed = schema.get("additionalProperties");
        let known: Vec<&str> = props
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let missing: Vec<&str> = schema
            .get("required")
            .and_then(J::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(J::as_str)
                    .filter(|k| !map.contains_key(*k as &str))
                    .collect()
            })
            .unwrap_or_default();
        let mut explained: Vec<String> = Vec::new();
        for (key, value) in map.iter() {
            let key: &str = key;
            path.push(Seg::Key(key.to_owned()));
            match props.and_then(|p| p.get(key)) {
                Some(sub) => self.walk(value, sub, path),
                None => match closed {
                    Some(J::Bool(false)) => {
                        let parent = dotted(&path[..path.len() - 1]);
                        let full = if parent.is_empty() {
                            key.to_owned()
                        } else {
                            format!("{parent}.{key}")
                        };
                        let mut d = Diagnostic::error(
                            codes::UNKNOWN_SETTING_KEY,
                            format!("unknown setting `{full}`"),
                        )
                        .at(self.at_key(path))
                        .label("not a setting");
                        // Prefer a key that is missing: a misspelt key is usually both.
                        let hint = suggest(key, missing.iter().copied())
                            .or_else(|| suggest(key, known.iter().copied()));
                        match hint {
                            Some(h) => {
                                d = d.note(format!("help: did you mean `{h}`?"));
                                explained.push(h);
                            }
                            None if !known.is_empty() => {
                                d = d.note(format!(
                                    "note: the settings here are {}",
                                    known
                                        .iter()
                                        .map(|k| format!("`{k}`"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                            }
                            None => {}
                        }
                        self.out.push(d);
                    }
                    Some(sub @ J::Object(_)) => self.walk(value, sub, path),
                    _ => {}
                },
            }
            path.pop();
        }
        for key in missing {
            if explained.iter().any(|e| e == key) {
                continue;
            }
            let parent = dotted(path);
            let full = if parent.is_empty() {
                key.to_owned()
            } else {
                format!("{parent}.{key}")
            };
            let at = match self.marked {
                Some(m) if path.is_empty() => Some(Location {
                    file: m.source.clone(),
                    start: m.root.at(),
                    end: m.root.at() + 1,
                }),
                _ => self.at_key(path),
            };
            self.out.push(
                Diagnostic::error(codes::MISSING_SETTING, format!("missing setting `{full}`"))
                    .at(at)
                    .label(format!("`{key}` is missing here"))
                    .note(format!(
                        "help: copy `{key}` from {}, which lists every setting",
                        self.example
                    )),
            );
        }
    }
}

fn type_hint(v: &Value, types: &[&str]) -> Option<String> {
    if types.contains(&"boolean") {
        if let Value::Str(s) = v {
            let s = s.to_lowercase();
            let word = match s.as_str() {
                "yes" | "on" | "true" | "y" | "да" | "1" => Some("true"),
                "no" | "off" | "false" | "n" | "нет" | "0" => Some("false"),
                _ => None,
            };
            return Some(match word {
                Some(w) => {
                    format!("write `{w}` without quotes: any text, even \"no\", is not a boolean")
                }
                None => "write `true` or `false` without quotes".to_owned(),
            });
        }
    }
    if types.contains(&"array") {
        return Some(match v {
            Value::Null => "write an empty list: `[]`".to_owned(),
            Value::Str(s) => format!("write a list, even of one: `[{s}]`"),
            _ => "write a list: `[a, b]`".to_owned(),
        });
    }
    if types.contains(&"object") && matches!(v, Value::Null | Value::Array(_)) {
        return Some("write a map: `{}` when empty, else one `key: value` a line".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(example: &str, settings: &str) -> Vec<Diagnostic> {
        let shape = SettingsShape::from_example("example.yaml", example, None).unwrap();
        let source = Arc::new(SourceFile {
            name: "settings.yaml".into(),
            text: settings.into(),
        });
        let marked = MarkedFile::parse(source).unwrap();
        let value: Value = serde_yaml::from_str(settings).unwrap();
        shape.check(&value, &marked)
    }

    const EXAMPLE: &str = "# Header.\n\n# The mode: fast | slow.\nmode: fast\nlimits:\n  # How many.\n  max: 3\n  list: [a, b]\nmap: {}\nany: null\n";

    #[test]
    fn the_example_matches_itself() {
        assert!(check(EXAMPLE, EXAMPLE).is_empty());
    }

    #[test]
    fn mismatches_at_the_settings_line() {
        let d = check(
            EXAMPLE,
            "mode: slo\nlimits:\n  max: \"3\"\n  list: a\nmap: {x: 1}\nany: [1]\n",
        );
        let got: Vec<(String, &str)> = d.iter().map(|d| (d.position(), d.code)).collect();
        assert_eq!(
            got,
            [
                ("settings.yaml:1:7".to_owned(), codes::SETTING_VALUE),
                ("settings.yaml:3:8".to_owned(), codes::SETTING_TYPE),
                ("settings.yaml:4:9".to_owned(), codes::SETTING_TYPE),
            ]
        );
        assert!(d[0].notes.iter().any(|n| n.contains("`slow`")));
    }

    #[test]
    fn a_misspelt_key_is_one_error() {
        let d = check(
            EXAMPLE,
            "mode: fast\nlimitz:\n  max: 3\n  list: []\nmap: {}\nany: 1\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].position(), "settings.yaml:2:1");
        assert!(d[0]
            .notes
            .iter()
            .any(|n| n.contains("did you mean `limits`")));
    }

    #[test]
    fn a_missing_key_is_named() {
        let d = check(EXAMPLE, "mode: fast\nlimits:\n  max: 3\nmap: {}\nany: 1\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, codes::MISSING_SETTING);
        assert_eq!(d[0].message, "missing setting `limits.list`");
        assert_eq!(d[0].position(), "settings.yaml:2:1");
    }

    #[test]
    fn additions_are_checked() {
        let shape = SettingsShape::from_example(
            "example.yaml",
            EXAMPLE,
            Some("limits.max: {minimum: 1}\n"),
        )
        .unwrap();
        assert_eq!(
            shape.schema()["properties"]["limits"]["properties"]["max"]["minimum"],
            1
        );
        assert_eq!(
            shape.schema()["properties"]["mode"]["enum"],
            json!(["fast", "slow"])
        );
    }
}
