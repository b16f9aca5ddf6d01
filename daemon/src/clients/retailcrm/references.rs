//! Reference books, users, custom fields and dictionaries, key introspection, settings.

use indexmap::IndexMap;
use serde_json::Value;

use super::error::Error;
use super::model::{Credentials, Page, PageRequest};
use super::transport::Call;
use super::RetailcrmClient;

/// A reference book under `/reference/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReferenceBook {
    /// Order statuses (map by code).
    Statuses,
    /// Status groups (map by code).
    StatusGroups,
    /// Item statuses (map by code).
    ProductStatuses,
    /// Stores (array).
    Stores,
    /// Sites / shops (map by code).
    Sites,
    /// Delivery types (map by code).
    DeliveryTypes,
    /// Payment types (map by code).
    PaymentTypes,
    /// Payment statuses (map by code).
    PaymentStatuses,
    /// Order types (map by code).
    OrderTypes,
    /// Order methods (map by code).
    OrderMethods,
    /// Price types (array).
    PriceTypes,
}

impl ReferenceBook {
    /// Path segment and answer key.
    pub fn path_and_key(self) -> (&'static str, &'static str) {
        match self {
            ReferenceBook::Statuses => ("statuses", "statuses"),
            ReferenceBook::StatusGroups => ("status-groups", "statusGroups"),
            ReferenceBook::ProductStatuses => ("product-statuses", "productStatuses"),
            ReferenceBook::Stores => ("stores", "stores"),
            ReferenceBook::Sites => ("sites", "sites"),
            ReferenceBook::DeliveryTypes => ("delivery-types", "deliveryTypes"),
            ReferenceBook::PaymentTypes => ("payment-types", "paymentTypes"),
            ReferenceBook::PaymentStatuses => ("payment-statuses", "paymentStatuses"),
            ReferenceBook::OrderTypes => ("order-types", "orderTypes"),
            ReferenceBook::OrderMethods => ("order-methods", "orderMethods"),
            ReferenceBook::PriceTypes => ("price-types", "priceTypes"),
        }
    }
}

impl RetailcrmClient {
    /// A reference book as the API returns it (an object keyed by code, or an array).
    pub async fn reference_raw(&self, book: ReferenceBook) -> Result<Value, Error> {
        let (seg, key) = book.path_and_key();
        let call = Call::get(&["reference", seg]);
        let path = call.path();
        let body = self.send(call).await?;
        super::take_field(body, key, &path)
    }

    /// A reference book keyed by `code`, whichever shape the API used.
    pub async fn reference(&self, book: ReferenceBook) -> Result<IndexMap<String, Value>, Error> {
        let raw = self.reference_raw(book).await?;
        Ok(match raw {
            Value::Object(map) => map.into_iter().collect(),
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| {
                    let code = v.get("code")?.as_str()?.to_string();
                    Some((code, v))
                })
                .collect(),
            _ => IndexMap::new(),
        })
    }

    /// One page of `GET /users`.
    pub async fn users(&self, filter: &Value, page: PageRequest) -> Result<Page, Error> {
        self.page_of(&["users"], "users", filter, page, &[]).await
    }

    /// Every user.
    pub async fn users_all(&self, filter: &Value) -> Result<Vec<Value>, Error> {
        self.all_pages(&["users"], "users", filter, &[]).await
    }

    /// `GET /users/{id}`.
    pub async fn user(&self, id: i64) -> Result<Value, Error> {
        let seg = id.to_string();
        let call = Call::get(&["users", &seg]);
        let path = call.path();
        let body = self.send(call).await?;
        super::take_field(body, "user", &path)
    }

    /// Every custom field, optionally of one entity (`order`, `customer`, ...).
    pub async fn custom_fields(&self, entity: Option<&str>) -> Result<Vec<Value>, Error> {
        let filter = match entity {
            Some(e) => serde_json::json!({ "entity": e }),
            None => Value::Null,
        };
        self.all_pages(&["custom-fields"], "customFields", &filter, &[])
            .await
    }

    /// `GET /custom-fields/{entity}/{code}`.
    pub async fn custom_field(&self, entity: &str, code: &str) -> Result<Value, Error> {
        let call = Call::get(&["custom-fields", entity, code]);
        let path = call.path();
        let body = self.send(call).await?;
        super::take_field(body, "customField", &path)
    }

    /// Every custom dictionary with its elements.
    pub async fn custom_dictionaries(&self) -> Result<Vec<Value>, Error> {
        self.all_pages(
            &["custom-fields", "dictionaries"],
            "customDictionaries",
            &Value::Null,
            &[],
        )
        .await
    }

    /// `GET /custom-fields/dictionaries/{code}`.
    pub async fn custom_dictionary(&self, code: &str) -> Result<Value, Error> {
        let call = Call::get(&["custom-fields", "dictionaries", code]);
        let path = call.path();
        let body = self.send(call).await?;
        super::take_field(body, "customDictionary", &path)
    }

    /// `GET /api/credentials` (unversioned): the scopes of our own key.
    pub async fn credentials(&self) -> Result<Credentials, Error> {
        let mut call = Call::get(&[]);
        call.segments = vec!["api".into(), "credentials".into()];
        let path = call.path();
        let body = self.send(call).await?;
        serde_json::from_value(body).map_err(|e| Error::Decode {
            method: "GET".into(),
            path,
            detail: format!("bad credentials answer: {e}"),
        })
    }

    /// `GET /settings`: account settings (`settings.timezone.value`, currency, ...).
    pub async fn settings(&self) -> Result<Value, Error> {
        let call = Call::get(&["settings"]);
        let path = call.path();
        let body = self.send(call).await?;
        super::take_field(body, "settings", &path)
    }

    /// The account's time zone (`GET /settings` → `settings.timezone.value`, an IANA name).
    /// retailCRM writes every date-time without a zone: `createdAt`, history times,
    /// `delivery.date`, payment `paidAt` are wall-clock times in this zone.
    pub async fn timezone(&self) -> Result<chrono_tz::Tz, Error> {
        let settings = self.settings().await?;
        account_timezone(&settings).map_err(|detail| Error::Decode {
            method: "GET".into(),
            path: "/api/v5/settings".into(),
            detail,
        })
    }
}

/// The time zone in a `/settings` answer's `settings` object (`timezone.value`).
pub fn account_timezone(settings: &Value) -> Result<chrono_tz::Tz, String> {
    let name = settings
        .pointer("/timezone/value")
        .and_then(Value::as_str)
        .ok_or_else(|| "the settings carry no timezone.value".to_string())?;
    name.parse()
        .map_err(|_| format!("the account's time zone `{name}` is not an IANA zone name"))
}

#[cfg(test)]
mod timezone_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_accounts_zone() {
        let tz = account_timezone(&json!({"timezone": {"value": "Asia/Yekaterinburg"}}));
        assert_eq!(tz, Ok(chrono_tz::Asia::Yekaterinburg));
        assert!(
            account_timezone(&json!({"timezone": {"value": "Mars/Olympus"}}))
                .is_err_and(|e| e.contains("Mars/Olympus"))
        );
        assert!(account_timezone(&json!({})).is_err());
    }
}
