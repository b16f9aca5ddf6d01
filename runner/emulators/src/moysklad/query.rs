//! Query parameters of collection requests: `filter`, `search`, `order`, `expand`, `limit`,
//! `offset`, as `md/_general.md` describes them.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde_json::Value;

use super::errors::{self, MsError};

/// A comparison operator of `filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `~` (substring, case-insensitive)
    Like,
    /// `~=` (prefix)
    Prefix,
    /// `=~` (suffix)
    Suffix,
}

/// One `field<op>value` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The field (or attribute href).
    pub field: String,
    /// The operator.
    pub op: Op,
    /// The raw value (unescaped).
    pub value: String,
}

/// Splits `filter` on unescaped `;` and parses each condition.
pub fn parse_filter(filter: &str) -> Result<Vec<Condition>, MsError> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&';') => {
                cur.push(';');
                chars.next();
            }
            ';' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| parse_condition(&p))
        .collect()
}

fn parse_condition(s: &str) -> Result<Condition, MsError> {
    // An attribute filter starts with an href ("https://…/attributes/<id>=v"): skip the
    // scheme's "://" when looking for the operator.
    let start = if s.starts_with("http://") || s.starts_with("https://") {
        s.find("://").map_or(0, |i| i + 3)
    } else {
        0
    };
    let pos = s[start..]
        .find(['=', '<', '>', '!', '~'])
        .map(|i| i + start)
        .ok_or_else(|| errors::filter_error(&format!("неверное условие '{s}'")))?;
    let field = &s[..pos];
    let rest = &s[pos..];
    let (op, len) = if rest.starts_with(">=") {
        (Op::Ge, 2)
    } else if rest.starts_with("<=") {
        (Op::Le, 2)
    } else if rest.starts_with("!=") {
        (Op::Ne, 2)
    } else if rest.starts_with("~=") {
        (Op::Prefix, 2)
    } else if rest.starts_with("=~") {
        (Op::Suffix, 2)
    } else if rest.starts_with('=') {
        (Op::Eq, 1)
    } else if rest.starts_with('>') {
        (Op::Gt, 1)
    } else if rest.starts_with('<') {
        (Op::Lt, 1)
    } else if rest.starts_with('~') {
        (Op::Like, 1)
    } else {
        return Err(errors::filter_error(&format!("неверный оператор в '{s}'")));
    };
    if field.is_empty() {
        return Err(errors::filter_error(&format!("не указано поле в '{s}'")));
    }
    Ok(Condition {
        field: field.to_string(),
        op,
        value: rest[len..].to_string(),
    })
}

/// A scalar a field yields for comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A string (references yield the id of their target).
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

/// Fields whose values are МойСклад datetimes.
pub fn is_datetime_field(field: &str) -> bool {
    matches!(
        field,
        "updated"
            | "created"
            | "moment"
            | "deleted"
            | "deliveryPlannedMoment"
            | "paymentPlannedMoment"
            | "incomingDate"
            | "birthDate"
            | "certificateDate"
    )
}

/// Parses `YYYY-MM-DD HH:MM[:SS[.mmm]]`.
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
}

/// The id at the end of an href's path (query string dropped), or the value itself.
pub fn id_of(href_or_id: &str) -> &str {
    let path = href_or_id.split('?').next().unwrap_or(href_or_id);
    path.rsplit('/').next().unwrap_or(path)
}

/// Scalars of a JSON value: references give their id, arrays each element.
pub fn scalars(v: &Value) -> Vec<Scalar> {
    match v {
        Value::Null => vec![],
        Value::Bool(b) => vec![Scalar::Bool(*b)],
        Value::Number(n) => n.as_f64().map(Scalar::Num).into_iter().collect(),
        Value::String(s) if s.is_empty() => vec![],
        Value::String(s) => vec![Scalar::Str(s.clone())],
        Value::Array(a) => a.iter().flat_map(scalars).collect(),
        Value::Object(o) => match o
            .get("meta")
            .and_then(|m| m.get("href"))
            .and_then(Value::as_str)
        {
            Some(href) => vec![Scalar::Str(id_of(href).to_string())],
            None => vec![],
        },
    }
}

/// Compares field values with one condition. `values` are what the entity holds for the field.
pub fn compare(field: &str, values: &[Scalar], op: Op, raw: &str) -> Result<bool, MsError> {
    if raw.is_empty() {
        return match op {
            Op::Eq => Ok(values.is_empty()),
            Op::Ne => Ok(!values.is_empty()),
            _ => Err(errors::filter_error(&format!(
                "пустое значение для поля '{field}'"
            ))),
        };
    }
    let datetime = is_datetime_field(field);
    let want_dt = if datetime {
        Some(parse_datetime(raw).ok_or_else(|| errors::filter_date_error(field))?)
    } else {
        None
    };
    let one = |v: &Scalar| -> bool {
        match (v, op) {
            (Scalar::Str(s), Op::Like) => s.to_lowercase().contains(&raw.to_lowercase()),
            (Scalar::Str(s), Op::Prefix) => s.to_lowercase().starts_with(&raw.to_lowercase()),
            (Scalar::Str(s), Op::Suffix) => s.to_lowercase().ends_with(&raw.to_lowercase()),
            (_, Op::Like | Op::Prefix | Op::Suffix) => false,
            (Scalar::Str(s), _) => {
                if let Some(want) = want_dt {
                    match parse_datetime(s) {
                        Some(have) => ord(have.cmp(&want), op),
                        None => false,
                    }
                } else {
                    // References compare by id: accept an href or a bare id as the value.
                    let want = if raw.contains('/') { id_of(raw) } else { raw };
                    ord(s.as_str().cmp(want), op)
                }
            }
            (Scalar::Num(n), _) => match raw.parse::<f64>() {
                Ok(want) => n.partial_cmp(&want).is_some_and(|o| ord(o, op)),
                Err(_) => false,
            },
            (Scalar::Bool(b), Op::Eq) => raw.parse::<bool>().is_ok_and(|w| w == *b),
            (Scalar::Bool(b), Op::Ne) => raw.parse::<bool>().is_ok_and(|w| w != *b),
            (Scalar::Bool(_), _) => false,
        }
    };
    Ok(match op {
        // `!=` holds when no value equals; the others when some value satisfies.
        Op::Ne => values.iter().all(one),
        _ => values.iter().any(one),
    })
}

fn ord(o: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => o == Equal,
        Op::Ne => o != Equal,
        Op::Gt => o == Greater,
        Op::Lt => o == Less,
        Op::Ge => o != Less,
        Op::Le => o != Greater,
        Op::Like | Op::Prefix | Op::Suffix => false,
    }
}

/// Evaluates conditions: the same field with `=` several times is an OR; everything else is
/// an AND. `lookup` yields the scalars an entity holds for a field.
pub fn matches(
    conds: &[Condition],
    lookup: &mut dyn FnMut(&str) -> Vec<Scalar>,
) -> Result<bool, MsError> {
    let mut eq_groups: BTreeMap<&str, Vec<&Condition>> = BTreeMap::new();
    for c in conds {
        if c.op == Op::Eq {
            eq_groups.entry(c.field.as_str()).or_default().push(c);
        } else if !compare(&c.field, &lookup(&c.field), c.op, &c.value)? {
            return Ok(false);
        }
    }
    for (field, group) in eq_groups {
        let values = lookup(field);
        let mut any = false;
        for c in group {
            if compare(field, &values, Op::Eq, &c.value)? {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A tree of `expand` paths (`positions.assortment` → positions → assortment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expand(pub BTreeMap<String, Expand>);

impl Expand {
    /// Parses `a,b.c`; paths deeper than 3 levels are cut at 3, as the API does.
    pub fn parse(s: &str) -> Expand {
        let mut root = Expand::default();
        for path in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut node = &mut root;
            for seg in path.split('.').take(3) {
                node = node.0.entry(seg.to_string()).or_default();
            }
        }
        root
    }

    /// The subtree for a field, if it is expanded.
    pub fn get(&self, field: &str) -> Option<&Expand> {
        self.0.get(field)
    }

    /// Whether nothing is expanded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parsed paging and shaping parameters of a list request.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// `limit` (1..=1000, default 1000).
    pub limit: usize,
    /// `offset` (default 0).
    pub offset: usize,
    /// Conditions of `filter`.
    pub filter: Vec<Condition>,
    /// `search`.
    pub search: Option<String>,
    /// `order`: (field, descending).
    pub order: Vec<(String, bool)>,
    /// `expand` (already dropped when `limit` > 100, as the API silently does).
    pub expand: Expand,
}

impl ListParams {
    /// Reads the parameters from the decoded query string.
    pub fn from_query(q: &[(String, String)]) -> Result<ListParams, MsError> {
        let get = |k: &str| {
            q.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let limit = match get("limit") {
            None => 1000,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => return Err(errors::bad_param("limit", v, "1-1000")),
            },
        };
        let offset = match get("offset") {
            None => 0,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| errors::bad_param("offset", v, ">= 0"))?,
        };
        let mut filter = Vec::new();
        for (k, v) in q {
            if k == "filter" {
                filter.extend(parse_filter(v)?);
            }
        }
        let order = get("order")
            .map(|o| {
                o.split(';')
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.split_once(',') {
                        Some((f, dir)) => (f.to_string(), dir.eq_ignore_ascii_case("desc")),
                        None => (s.to_string(), false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let expand = if limit <= 100 {
            get("expand").map(Expand::parse).unwrap_or_default()
        } else {
            Expand::default()
        };
        Ok(ListParams {
            limit,
            offset,
            filter,
            search: get("search").map(str::to_string).filter(|s| !s.is_empty()),
            order,
            expand,
        })
    }
}

/// Compares two JSON values for `order` (numbers, strings, booleans; missing sorts first).
pub fn order_cmp(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_operators_and_escapes() {
        let c =
            parse_filter("name=a\\;b;updated>=2026-01-01 00:00:00;sum<5;email~=x;phone=~9;inn!=")
                .expect("valid filter");
        let ops: Vec<_> = c
            .iter()
            .map(|c| (c.field.as_str(), c.op, c.value.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("name", Op::Eq, "a;b"),
                ("updated", Op::Ge, "2026-01-01 00:00:00"),
                ("sum", Op::Lt, "5"),
                ("email", Op::Prefix, "x"),
                ("phone", Op::Suffix, "9"),
                ("inn", Op::Ne, ""),
            ]
        );
        let attr =
            parse_filter("https://h/api/remap/1.2/entity/customerorder/metadata/attributes/abc=v")
                .expect("attribute filter");
        assert_eq!(
            attr[0].field,
            "https://h/api/remap/1.2/entity/customerorder/metadata/attributes/abc"
        );
        assert_eq!(attr[0].value, "v");
        assert!(parse_filter("justaword").is_err());
        let by_ref = parse_filter("agent=https://h/api/remap/1.2/entity/counterparty/x")
            .expect("reference filter");
        assert_eq!(
            (by_ref[0].field.as_str(), by_ref[0].value.as_str()),
            ("agent", "https://h/api/remap/1.2/entity/counterparty/x")
        );
    }

    #[test]
    fn same_field_eq_is_or_other_fields_and() {
        let conds = parse_filter("name=a;name=b;inn=1").expect("valid");
        let entity = json!({"name": "b", "inn": "1"});
        let mut lookup = |f: &str| scalars(entity.get(f).unwrap_or(&Value::Null));
        assert!(matches(&conds, &mut lookup).expect("ok"));
        let entity = json!({"name": "b", "inn": "2"});
        let mut lookup = |f: &str| scalars(entity.get(f).unwrap_or(&Value::Null));
        assert!(!matches(&conds, &mut lookup).expect("ok"));
    }

    #[test]
    fn datetimes_compare_as_datetimes() {
        let v = [Scalar::Str("2026-03-02 14:35:10.123".into())];
        assert!(compare("updated", &v, Op::Ge, "2026-03-02 14:35").expect("ok"));
        assert!(!compare("updated", &v, Op::Gt, "2026-03-02 14:36:00").expect("ok"));
        assert!(compare("updated", &v, Op::Ge, "garbage").is_err());
    }

    #[test]
    fn expand_tree_and_depth() {
        let e = Expand::parse("agent,positions.assortment,a.b.c.d");
        assert!(e.get("agent").is_some());
        assert!(e
            .get("positions")
            .and_then(|p| p.get("assortment"))
            .is_some());
        let c = e.get("a").and_then(|x| x.get("b")).and_then(|x| x.get("c"));
        assert!(c.is_some_and(|c| c.is_empty()));
    }

    #[test]
    fn expand_is_dropped_above_limit_100() {
        let q = vec![
            ("limit".to_string(), "1000".to_string()),
            ("expand".to_string(), "agent".to_string()),
        ];
        assert!(ListParams::from_query(&q).expect("ok").expand.is_empty());
        let q = vec![
            ("limit".to_string(), "100".to_string()),
            ("expand".to_string(), "agent".to_string()),
        ];
        assert!(!ListParams::from_query(&q).expect("ok").expand.is_empty());
        let q = vec![("limit".to_string(), "1001".to_string())];
        assert!(ListParams::from_query(&q).is_err());
    }
}
