//! Building collection queries: `filter`, `search`, `order`, `expand`, `limit`, `offset`.

/// A list query. Conditions of the same field with `=` are ORed by МойСклад, different fields
/// are ANDed (`md/_general.md`).
///
/// ```
/// use skladsync_daemon::clients::moysklad::ListQuery;
/// let q = ListQuery::new()
///     .filter_eq("externalCode", "rcrm-order-1")
///     .filter("updated", ">=", "2026-01-01 00:00:00")
///     .expand("positions")
///     .expand("agent");
/// assert_eq!(
///     q.to_pairs(),
///     vec![
///         ("filter".to_string(), "externalCode=rcrm-order-1;updated>=2026-01-01 00:00:00".to_string()),
///         ("expand".to_string(), "positions,agent".to_string()),
///     ]
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListQuery {
    conditions: Vec<String>,
    search: Option<String>,
    order: Vec<String>,
    expand: Vec<String>,
    limit: Option<u32>,
    offset: u32,
    extra: Vec<(String, String)>,
}

/// Escapes `;` in a filter value (`\;`), as the API expects.
pub fn escape_filter_value(v: &str) -> String {
    v.replace(';', "\\;")
}

impl ListQuery {
    /// An empty query.
    pub fn new() -> Self {
        ListQuery::default()
    }

    /// Adds `field<op>value` (op: `=`, `!=`, `>`, `<`, `>=`, `<=`, `~`, `~=`, `=~`).
    #[must_use]
    pub fn filter(mut self, field: &str, op: &str, value: &str) -> Self {
        self.conditions
            .push(format!("{field}{op}{}", escape_filter_value(value)));
        self
    }

    /// Adds `field=value`.
    #[must_use]
    pub fn filter_eq(self, field: &str, value: &str) -> Self {
        self.filter(field, "=", value)
    }

    /// Adds `updated>=<since>` (the reconciliation poll); `since` is `YYYY-MM-DD HH:MM:SS`.
    #[must_use]
    pub fn updated_since(self, since: &str) -> Self {
        self.filter("updated", ">=", since)
    }

    /// Adds a raw, already escaped condition.
    #[must_use]
    pub fn filter_raw(mut self, condition: &str) -> Self {
        self.conditions.push(condition.to_string());
        self
    }

    /// Sets `search`.
    #[must_use]
    pub fn search(mut self, text: &str) -> Self {
        self.search = Some(text.to_string());
        self
    }

    /// Adds an `order` field.
    #[must_use]
    pub fn order(mut self, field: &str, descending: bool) -> Self {
        self.order.push(if descending {
            format!("{field},desc")
        } else {
            field.to_string()
        });
        self
    }

    /// Adds an `expand` path (e.g. `positions.assortment`). Lists honour expand only with a
    /// limit of at most 100, so paging drops to 100 rows per page when this is set.
    #[must_use]
    pub fn expand(mut self, path: &str) -> Self {
        self.expand.push(path.to_string());
        self
    }

    /// Sets `limit` (1..=1000).
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit.clamp(1, 1000));
        self
    }

    /// Sets `offset`.
    #[must_use]
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = offset;
        self
    }

    /// Adds any other query parameter (e.g. `groupBy=product` of stock reports).
    #[must_use]
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.to_string(), value.to_string()));
        self
    }

    /// Whether `expand` is set.
    pub fn has_expand(&self) -> bool {
        !self.expand.is_empty()
    }

    /// The limit, if set.
    pub fn get_limit(&self) -> Option<u32> {
        self.limit
    }

    /// The offset.
    pub fn get_offset(&self) -> u32 {
        self.offset
    }

    /// The query-string pairs (unencoded); `limit`/`offset` only when set/non-zero.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if !self.conditions.is_empty() {
            p.push(("filter".into(), self.conditions.join(";")));
        }
        if let Some(s) = &self.search {
            p.push(("search".into(), s.clone()));
        }
        if !self.order.is_empty() {
            p.push(("order".into(), self.order.join(";")));
        }
        if !self.expand.is_empty() {
            p.push(("expand".into(), self.expand.join(",")));
        }
        if let Some(l) = self.limit {
            p.push(("limit".into(), l.to_string()));
        }
        if self.offset > 0 {
            p.push(("offset".into(), self.offset.to_string()));
        }
        p.extend(self.extra.iter().cloned());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_semicolons_and_orders() {
        let q = ListQuery::new()
            .filter_eq("name", "a;b")
            .order("updated", true)
            .order("name", false)
            .limit(5000)
            .offset(10);
        assert_eq!(
            q.to_pairs(),
            vec![
                ("filter".to_string(), "name=a\\;b".to_string()),
                ("order".to_string(), "updated,desc;name".to_string()),
                ("limit".to_string(), "1000".to_string()),
                ("offset".to_string(), "10".to_string()),
            ]
        );
    }
}
