//! Individual and corporate customers, and the contacts, companies and addresses of the
//! latter.

use serde_json::Value;

use super::entity::{EntityKind, WriteOptions};
use super::error::Error;
use super::model::{EntityRef, Page, PageRequest, WriteResult};
use super::RetailcrmClient;

fn site_opts(site: Option<&str>) -> WriteOptions {
    WriteOptions {
        site: site.map(str::to_string),
        parent: None,
    }
}

fn sub_opts(parent: &EntityRef, site: Option<&str>) -> WriteOptions {
    WriteOptions {
        site: site.map(str::to_string),
        parent: Some(parent.clone()),
    }
}

impl RetailcrmClient {
    /// `GET /customers/{id}?by=&site=`.
    pub async fn customer_get(&self, id: &EntityRef, site: Option<&str>) -> Result<Value, Error> {
        self.fetch(EntityKind::Customer, id, &site_opts(site)).await
    }

    /// `POST /customers/create` (`customer=<json>`, `site`).
    pub async fn customer_create(
        &self,
        customer: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.create(EntityKind::Customer, customer, &site_opts(site))
            .await
    }

    /// `POST /customers/{id}/edit` (`by`, `customer=<json>`, `site`).
    pub async fn customer_edit(
        &self,
        id: &EntityRef,
        customer: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.edit(EntityKind::Customer, id, customer, &site_opts(site))
            .await
    }

    /// One page of `GET /customers`.
    pub async fn customers_list(&self, filter: &Value, page: PageRequest) -> Result<Page, Error> {
        self.list(EntityKind::Customer, filter, page, &WriteOptions::default())
            .await
    }

    /// `GET /customers-corporate/{id}?by=&site=`.
    pub async fn corporate_get(&self, id: &EntityRef, site: Option<&str>) -> Result<Value, Error> {
        self.fetch(EntityKind::CustomerCorporate, id, &site_opts(site))
            .await
    }

    /// `POST /customers-corporate/create` (`customerCorporate=<json>`, `site`).
    pub async fn corporate_create(
        &self,
        customer: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.create(EntityKind::CustomerCorporate, customer, &site_opts(site))
            .await
    }

    /// `POST /customers-corporate/{id}/edit`.
    pub async fn corporate_edit(
        &self,
        id: &EntityRef,
        customer: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.edit(
            EntityKind::CustomerCorporate,
            id,
            customer,
            &site_opts(site),
        )
        .await
    }

    /// One page of `GET /customers-corporate`.
    pub async fn corporate_list(&self, filter: &Value, page: PageRequest) -> Result<Page, Error> {
        self.list(
            EntityKind::CustomerCorporate,
            filter,
            page,
            &WriteOptions::default(),
        )
        .await
    }

    /// All contacts of a corporate customer (`GET /customers-corporate/{id}/contacts`).
    pub async fn corporate_contacts(
        &self,
        parent: &EntityRef,
        site: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        self.list_all(
            EntityKind::CorporateContact,
            &Value::Null,
            &sub_opts(parent, site),
        )
        .await
    }

    /// `POST /customers-corporate/{id}/contacts/create` (`contact=<json>`).
    pub async fn corporate_contact_create(
        &self,
        parent: &EntityRef,
        contact: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.create(
            EntityKind::CorporateContact,
            contact,
            &sub_opts(parent, site),
        )
        .await
    }

    /// `POST /customers-corporate/{id}/contacts/{entity}/edit` (`by`, `entityBy`).
    pub async fn corporate_contact_edit(
        &self,
        parent: &EntityRef,
        contact_id: &EntityRef,
        contact: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.edit(
            EntityKind::CorporateContact,
            contact_id,
            contact,
            &sub_opts(parent, site),
        )
        .await
    }

    /// All companies of a corporate customer.
    pub async fn corporate_companies(
        &self,
        parent: &EntityRef,
        site: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        self.list_all(
            EntityKind::CorporateCompany,
            &Value::Null,
            &sub_opts(parent, site),
        )
        .await
    }

    /// `POST /customers-corporate/{id}/companies/create` (`company=<json>`).
    pub async fn corporate_company_create(
        &self,
        parent: &EntityRef,
        company: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.create(
            EntityKind::CorporateCompany,
            company,
            &sub_opts(parent, site),
        )
        .await
    }

    /// `POST /customers-corporate/{id}/companies/{entity}/edit`.
    pub async fn corporate_company_edit(
        &self,
        parent: &EntityRef,
        company_id: &EntityRef,
        company: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.edit(
            EntityKind::CorporateCompany,
            company_id,
            company,
            &sub_opts(parent, site),
        )
        .await
    }

    /// All addresses of a corporate customer.
    pub async fn corporate_addresses(
        &self,
        parent: &EntityRef,
        site: Option<&str>,
    ) -> Result<Vec<Value>, Error> {
        self.list_all(
            EntityKind::CorporateAddress,
            &Value::Null,
            &sub_opts(parent, site),
        )
        .await
    }
}
