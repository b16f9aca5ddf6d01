//! A corpus of events to evaluate: rule test cases (event + world + settings overrides),
//! bare recorded events (a map whose `event` is the name), or JSON Lines files of either,
//! one per line.

use std::path::{Path, PathBuf};

use skladsync_engine::{Case, Event, RecordedWorld, Value};

use super::ToolError;

/// One event of a corpus, with the world it meets.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where it came from: the path relative to the corpus (and `:line` for JSON Lines).
    pub name: String,
    /// The event, its world and settings overrides.
    pub case: Case,
}

/// Reads a case file or a bare event document; `name` is its path (a case's includes are
/// relative to it).
pub fn item_from_value(name: String, doc: &Value) -> Result<Item, String> {
    let dir = Path::new(&name).parent().map(Path::to_path_buf);
    item_from_value_in(name, doc, dir.as_deref())
}

/// Reads a case file or a bare event document, a case's includes relative to `dir`.
pub fn item_from_value_in(name: String, doc: &Value, dir: Option<&Path>) -> Result<Item, String> {
    let is_case = matches!(doc.get_ref("event"), Some(Value::Object(_)));
    let case = if is_case {
        let text = serde_json::to_string(doc).map_err(|e| e.to_string())?;
        Case::from_yaml_in(&text, dir)?
    } else {
        Case {
            doc: None,
            event: Event::from_document(doc)?,
            event_doc: doc.clone(),
            world: RecordedWorld::default(),
            settings: Value::Null,
            expect: None,
        }
    };
    Ok(Item { name, case })
}

/// Every event under `dir`: `*.yaml`, `*.yml`, `*.json` files (each a case or an event) and
/// `*.jsonl` files (one per line), sorted by path.
pub fn load(dir: &Path) -> Result<Vec<Item>, ToolError> {
    if dir.is_file() {
        let base = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        return load_file(&base, &dir.to_path_buf());
    }
    let mut out = Vec::new();
    for path in super::files_with(dir, &["yaml", "yml", "json", "jsonl"])? {
        out.extend(load_file(dir, &path)?);
    }
    Ok(out)
}

fn rel_name(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn load_file(base: &Path, path: &PathBuf) -> Result<Vec<Item>, ToolError> {
    let text = std::fs::read_to_string(path).map_err(|e| ToolError::io(path, e))?;
    let name = rel_name(base, path);
    if path.extension().is_some_and(|x| x == "jsonl") {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let doc: Value = serde_json::from_str(line)
                .map_err(|e| ToolError::invalid(path, format!("line {}: {e}", i + 1)))?;
            let item = item_from_value(format!("{name}:{}", i + 1), &doc)
                .map_err(|e| ToolError::invalid(path, format!("line {}: {e}", i + 1)))?;
            out.push(item);
        }
        return Ok(out);
    }
    let doc: Value =
        serde_yaml::from_str(&text).map_err(|e| ToolError::invalid(path, e.to_string()))?;
    let item =
        item_from_value_in(name, &doc, path.parent()).map_err(|e| ToolError::invalid(path, e))?;
    Ok(vec![item])
}
