//! The generic, entity-level interface: create / edit / fetch / list / delete by
//! [`EntityKind`] with JSON bodies, for the apply layer that turns plan effects
//! `{system, entity, op, id, body, key}` into API calls.

use std::str::FromStr;

use serde_json::Value;
use skladsync_engine::Value as EngineValue;

use super::error::Error;
use super::model::{EntityRef, Page, PageRequest, WriteResult};
use super::transport::{Call, Safety};
use super::{Body, RetailcrmClient};

/// The entities the client can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntityKind {
    /// `/orders`: form field `order`.
    Order,
    /// `/orders/payments`: form field `payment` (no read endpoint; delete by id).
    Payment,
    /// `/customers`: form field `customer`.
    Customer,
    /// `/customers-corporate`: form field `customerCorporate`.
    CustomerCorporate,
    /// `/customers-corporate/{parent}/contacts`: form field `contact`.
    CorporateContact,
    /// `/customers-corporate/{parent}/companies`: form field `company`.
    CorporateCompany,
    /// `/customers-corporate/{parent}/addresses`: form field `address`.
    CorporateAddress,
    /// `/tasks`: form field `task`.
    Task,
}

impl FromStr for EntityKind {
    type Err = Error;

    /// Accepts the singular or plural API names and snake/kebab variants:
    /// `order`, `payment`, `customer`, `customer_corporate`, `customers-corporate`,
    /// `corporate_contact`, `corporate_company`, `corporate_address`, `task`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let norm: String = s
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Ok(match norm.as_str() {
            "order" | "orders" => EntityKind::Order,
            "payment" | "payments" | "orderpayment" | "orderpayments" => EntityKind::Payment,
            "customer" | "customers" => EntityKind::Customer,
            "customercorporate" | "customerscorporate" | "corporatecustomer" => {
                EntityKind::CustomerCorporate
            }
            "corporatecontact" | "contact" | "contacts" | "customercontact" => {
                EntityKind::CorporateContact
            }
            "corporatecompany" | "company" | "companies" => EntityKind::CorporateCompany,
            "corporateaddress" | "address" | "addresses" => EntityKind::CorporateAddress,
            "task" | "tasks" => EntityKind::Task,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unknown retailCRM entity kind {s:?}"
                )))
            }
        })
    }
}

impl EntityKind {
    /// The form field that carries the JSON body.
    pub fn form_field(self) -> &'static str {
        match self {
            EntityKind::Order => "order",
            EntityKind::Payment => "payment",
            EntityKind::Customer => "customer",
            EntityKind::CustomerCorporate => "customerCorporate",
            EntityKind::CorporateContact => "contact",
            EntityKind::CorporateCompany => "company",
            EntityKind::CorporateAddress => "address",
            EntityKind::Task => "task",
        }
    }

    /// The key of a single entity in a GET answer.
    fn get_key(self) -> Option<&'static str> {
        match self {
            EntityKind::Order => Some("order"),
            EntityKind::Customer => Some("customer"),
            EntityKind::CustomerCorporate => Some("customerCorporate"),
            EntityKind::Task => Some("task"),
            _ => None,
        }
    }

    /// The key of the list in a list answer.
    fn list_key(self) -> Option<&'static str> {
        match self {
            EntityKind::Order => Some("orders"),
            EntityKind::Customer => Some("customers"),
            EntityKind::CustomerCorporate => Some("customersCorporate"),
            EntityKind::CorporateContact => Some("contacts"),
            EntityKind::CorporateCompany => Some("companies"),
            EntityKind::CorporateAddress => Some("addresses"),
            EntityKind::Task => Some("tasks"),
            EntityKind::Payment => None,
        }
    }

    /// Path segments of the collection.
    fn base(self) -> &'static [&'static str] {
        match self {
            EntityKind::Order => &["orders"],
            EntityKind::Payment => &["orders", "payments"],
            EntityKind::Customer => &["customers"],
            EntityKind::CustomerCorporate
            | EntityKind::CorporateContact
            | EntityKind::CorporateCompany
            | EntityKind::CorporateAddress => &["customers-corporate"],
            EntityKind::Task => &["tasks"],
        }
    }

    /// The sub-collection of a corporate customer.
    fn sub(self) -> Option<&'static str> {
        match self {
            EntityKind::CorporateContact => Some("contacts"),
            EntityKind::CorporateCompany => Some("companies"),
            EntityKind::CorporateAddress => Some("addresses"),
            _ => None,
        }
    }

    /// Whether `by` applies to the path id of edits/reads.
    fn takes_by(self) -> bool {
        !matches!(self, EntityKind::Task)
    }
}

/// The optional parameters of a write or read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `site` (needed for `externalId` addressing when the key sees several sites).
    pub site: Option<String>,
    /// The corporate customer of a contact / company / address.
    pub parent: Option<EntityRef>,
}

impl WriteOptions {
    /// Options with a site.
    pub fn site(site: impl Into<String>) -> Self {
        Self {
            site: Some(site.into()),
            parent: None,
        }
    }

    /// Adds the parent corporate customer.
    pub fn with_parent(mut self, parent: EntityRef) -> Self {
        self.parent = Some(parent);
        self
    }
}

fn segs<'a>(base: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(rest.iter()).copied().collect()
}

impl RetailcrmClient {
    fn parent_of(kind: EntityKind, opts: &WriteOptions) -> Result<Option<EntityRef>, Error> {
        match (kind.sub(), &opts.parent) {
            (Some(_), Some(p)) => Ok(Some(p.clone())),
            (Some(_), None) => Err(Error::InvalidInput(format!(
                "{kind:?} needs the parent corporate customer (WriteOptions::parent)"
            ))),
            (None, _) => Ok(None),
        }
    }

    /// Creates an entity: `POST …/create` with `{form_field}=<json>` and `site`.
    /// Creates are not idempotent: a lost answer gives [`Error::NoResponse`].
    pub async fn create(
        &self,
        kind: EntityKind,
        body: &Value,
        opts: &WriteOptions,
    ) -> Result<WriteResult, Error> {
        let call = match Self::parent_of(kind, opts)? {
            Some(parent) => {
                let p = parent.segment();
                let sub = kind.sub().unwrap_or_default();
                Call::post(
                    &segs(kind.base(), &[&p, sub, "create"]),
                    Safety::NonIdempotent,
                )
                .field("by", parent.by())
            }
            None => Call::post(&segs(kind.base(), &["create"]), Safety::NonIdempotent),
        };
        let call = call
            .json_field(kind.form_field(), body)?
            .opt_field("site", opts.site.as_deref());
        self.send(call).await.map(WriteResult::from_body)
    }

    /// Edits an entity: `POST …/{id}/edit` with `by`, `{form_field}=<json>` and `site`.
    /// For sub-entities `id` is the contact/company/address and `entityBy` says how to read it.
    pub async fn edit(
        &self,
        kind: EntityKind,
        id: &EntityRef,
        body: &Value,
        opts: &WriteOptions,
    ) -> Result<WriteResult, Error> {
        let seg = id.segment();
        let call = match Self::parent_of(kind, opts)? {
            Some(parent) => {
                let p = parent.segment();
                let sub = kind.sub().unwrap_or_default();
                Call::post(
                    &segs(kind.base(), &[&p, sub, &seg, "edit"]),
                    Safety::Idempotent,
                )
                .field("by", parent.by())
                .field("entityBy", id.by())
            }
            None => {
                let call = Call::post(&segs(kind.base(), &[&seg, "edit"]), Safety::Idempotent);
                if kind.takes_by() {
                    call.field("by", id.by())
                } else {
                    call
                }
            }
        };
        let call = call
            .json_field(kind.form_field(), body)?
            .opt_field("site", opts.site.as_deref());
        self.send(call).await.map(WriteResult::from_body)
    }

    /// Reads one entity (`GET /{collection}/{id}?by=&site=`). Orders, customers, corporate
    /// customers and tasks only: the API has no single-read for payments and sub-entities
    /// (list those through the parent).
    pub async fn fetch(
        &self,
        kind: EntityKind,
        id: &EntityRef,
        opts: &WriteOptions,
    ) -> Result<Value, Error> {
        self.fetch_as(kind, id, opts).await
    }

    /// [`RetailcrmClient::fetch`], the entity read straight into engine values (for an
    /// entity the rules evaluate).
    pub async fn fetch_value(
        &self,
        kind: EntityKind,
        id: &EntityRef,
        opts: &WriteOptions,
    ) -> Result<EngineValue, Error> {
        self.fetch_as(kind, id, opts).await
    }

    async fn fetch_as<T: Body>(
        &self,
        kind: EntityKind,
        id: &EntityRef,
        opts: &WriteOptions,
    ) -> Result<T, Error> {
        let Some(key) = kind.get_key() else {
            return Err(Error::InvalidInput(format!(
                "retailCRM has no single-read endpoint for {kind:?}"
            )));
        };
        let seg = id.segment();
        let mut call = Call::get(&segs(kind.base(), &[&seg]));
        if kind.takes_by() {
            call = call.param("by", id.by());
        }
        if let Some(site) = &opts.site {
            call = call.param("site", site.clone());
        }
        let path = call.path();
        let body = self.send_as::<T>(call).await?;
        T::field(body, key, &path)
    }

    /// Reads one page of a collection with a JSON `filter` (`filter[...]` parameters).
    pub async fn list(
        &self,
        kind: EntityKind,
        filter: &Value,
        page: PageRequest,
        opts: &WriteOptions,
    ) -> Result<Page, Error> {
        let key = kind
            .list_key()
            .ok_or_else(|| Error::InvalidInput(format!("retailCRM cannot list {kind:?}")))?;
        match Self::parent_of(kind, opts)? {
            Some(parent) => {
                let p = parent.segment();
                let sub = kind.sub().unwrap_or_default();
                let mut extra = vec![("by", parent.by())];
                if let Some(site) = &opts.site {
                    extra.push(("site", site.as_str()));
                }
                self.page_of(&segs(kind.base(), &[&p, sub]), key, filter, page, &extra)
                    .await
            }
            None => self.page_of(kind.base(), key, filter, page, &[]).await,
        }
    }

    /// Reads every page of a collection.
    pub async fn list_all(
        &self,
        kind: EntityKind,
        filter: &Value,
        opts: &WriteOptions,
    ) -> Result<Vec<Value>, Error> {
        self.list_all_as(kind, filter, opts).await
    }

    /// [`RetailcrmClient::list_all`], the entities read straight into engine values (for
    /// entities the rules evaluate).
    pub async fn list_all_values(
        &self,
        kind: EntityKind,
        filter: &Value,
        opts: &WriteOptions,
    ) -> Result<Vec<EngineValue>, Error> {
        self.list_all_as(kind, filter, opts).await
    }

    async fn list_all_as<T: Body>(
        &self,
        kind: EntityKind,
        filter: &Value,
        opts: &WriteOptions,
    ) -> Result<Vec<T>, Error> {
        let key = kind
            .list_key()
            .ok_or_else(|| Error::InvalidInput(format!("retailCRM cannot list {kind:?}")))?;
        match Self::parent_of(kind, opts)? {
            Some(parent) => {
                let p = parent.segment();
                let sub = kind.sub().unwrap_or_default();
                let mut extra = vec![("by", parent.by())];
                if let Some(site) = &opts.site {
                    extra.push(("site", site.as_str()));
                }
                self.all_pages::<T>(&segs(kind.base(), &[&p, sub]), key, filter, &extra)
                    .await
            }
            None => self.all_pages::<T>(kind.base(), key, filter, &[]).await,
        }
    }

    /// Deletes an entity. retailCRM API v5 deletes only payments (`/orders/payments/{id}/delete`,
    /// by CRM id); anything else is an [`Error::InvalidInput`].
    pub async fn delete(&self, kind: EntityKind, id: &EntityRef) -> Result<(), Error> {
        match (kind, id) {
            (EntityKind::Payment, EntityRef::Id(n)) => {
                let seg = n.to_string();
                let call = Call::post(
                    &["orders", "payments", &seg, "delete"],
                    Safety::NonIdempotent,
                );
                self.send(call).await.map(|_| ())
            }
            (EntityKind::Payment, EntityRef::ExternalId(_)) => Err(Error::InvalidInput(
                "payments are deleted by CRM id only".into(),
            )),
            _ => Err(Error::InvalidInput(format!(
                "retailCRM API v5 cannot delete {kind:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_effect_names() {
        for (name, kind) in [
            ("order", EntityKind::Order),
            ("orders", EntityKind::Order),
            ("payment", EntityKind::Payment),
            ("customer", EntityKind::Customer),
            ("customer_corporate", EntityKind::CustomerCorporate),
            ("customers-corporate", EntityKind::CustomerCorporate),
            ("customerCorporate", EntityKind::CustomerCorporate),
            ("corporate_contact", EntityKind::CorporateContact),
            ("company", EntityKind::CorporateCompany),
            ("task", EntityKind::Task),
        ] {
            assert_eq!(name.parse::<EntityKind>().ok(), Some(kind), "{name}");
        }
        assert!("counterparty".parse::<EntityKind>().is_err());
    }
}
