//! Request parameters as retailCRM reads them: bracketed query strings
//! (`filter[ids][]=1&filter[customFields][nps][min]=5`, PHP's `filter[ids][0]=1` too) and
//! form bodies whose entity fields are JSON strings.

use serde_json::{Map, Value};

use super::model::Failure;

/// Decoded `application/x-www-form-urlencoded` pairs, in order.
pub(crate) fn decode_pairs(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Parameters of one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params {
    /// The bracketed names folded into a tree.
    pub tree: Map<String, Value>,
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let mut tree = Map::new();
        for (k, v) in &pairs {
            insert(&mut tree, k, v.clone());
        }
        Self { tree }
    }

    /// A top-level scalar parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tree.get(key).and_then(Value::as_str)
    }

    /// The `filter` object (empty when absent).
    pub fn filter(&self) -> Map<String, Value> {
        match self.tree.get("filter") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    }

    /// A form field carrying JSON, parsed. Missing -> `Parameter 'x' is missing`; bad JSON ->
    /// `Errors in the input parameters`.
    pub fn json(&self, key: &str) -> Result<Value, Failure> {
        let raw = self.get(key).ok_or_else(|| Failure::missing(key))?;
        serde_json::from_str(raw)
            .map_err(|e| Failure::input(key, format!("The value is not valid JSON: {e}")))
    }

    /// `by`: `id` or `externalId` (default).
    pub fn by_id(&self, key: &str) -> Result<bool, Failure> {
        match self.get(key) {
            None | Some("externalId") => Ok(false),
            Some("id") => Ok(true),
            Some(other) => Err(Failure::input(
                key,
                format!("Value \"{other}\" is not valid. Allowed values: id, externalId."),
            )),
        }
    }

    /// `limit` and `page`, validated as retailCRM does (limit 20, 50 or 100).
    pub fn paging(&self) -> Result<(usize, usize), Failure> {
        let limit = match self.get("limit") {
            None => 20,
            Some(s) => match s.parse::<usize>() {
                Ok(n @ (20 | 50 | 100)) => n,
                _ => {
                    return Err(Failure::input(
                        "limit",
                        "The value you selected is not a valid choice.",
                    ))
                }
            },
        };
        let page = match self.get("page") {
            None => 1,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(Failure::input(
                        "page",
                        "This value should be greater than 0.",
                    ))
                }
            },
        };
        Ok((limit, page))
    }
}

/// Inserts `name=value` into the tree: `a[b][]` appends to an array, `a[b][0]` too.
fn insert(tree: &mut Map<String, Value>, name: &str, value: String) {
    let (head, rest) = match name.find('[') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    let mut keys: Vec<&str> = Vec::new();
    let mut s = rest;
    while let Some(stripped) = s.strip_prefix('[') {
        match stripped.find(']') {
            Some(end) => {
                keys.push(&stripped[..end]);
                s = &stripped[end + 1..];
            }
            None => break,
        }
    }
    if keys.is_empty() {
        tree.insert(head.to_string(), Value::String(value));
        return;
    }
    let slot = tree
        .entry(head.to_string())
        .or_insert_with(|| container_for(keys[0]));
    place(slot, &keys, value);
}

fn container_for(key: &str) -> Value {
    if key.is_empty() || key.chars().all(|c| c.is_ascii_digit()) {
        Value::Array(Vec::new())
    } else {
        Value::Object(Map::new())
    }
}

fn place(slot: &mut Value, keys: &[&str], value: String) {
    let Some((first, rest)) = keys.split_first() else {
        *slot = Value::String(value);
        return;
    };
    if !slot.is_array() && !slot.is_object() {
        *slot = container_for(first);
    }
    match slot {
        Value::Array(items) => {
            let mut child = match rest.first() {
                Some(k) => container_for(k),
                None => Value::Null,
            };
            place(&mut child, rest, value);
            items.push(child);
        }
        Value::Object(map) => {
            let child = map
                .entry((*first).to_string())
                .or_insert_with(|| match rest.first() {
                    Some(k) => container_for(k),
                    None => Value::Null,
                });
            place(child, rest, value);
        }
        _ => {}
    }
}

/// The strings of a list filter (`filter[ids][]=1`), or of a single value.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(b) => vec![if *b { "1" } else { "0" }.to_string()],
        Value::Object(m) => m.values().flat_map(strings).collect(),
        Value::Null => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn brackets_fold_into_a_tree() {
        let p = Params::new(decode_pairs(
            "filter%5Bids%5D%5B%5D=1&filter[ids][]=2&filter[customFields][nps][min]=5&filter[numbers][0]=A&limit=50",
        ));
        assert_eq!(
            Value::Object(p.tree.clone()),
            json!({"filter": {"ids": ["1", "2"], "customFields": {"nps": {"min": "5"}}, "numbers": ["A"]}, "limit": "50"})
        );
        assert_eq!(p.paging().ok(), Some((50, 1)));
        assert!(Params::new(decode_pairs("limit=25")).paging().is_err());
    }
}
