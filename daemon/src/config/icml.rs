//! The `icml:` section: the ICML catalogue (CAT-02) the daemon regenerates and serves.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Interval, Secret};
use crate::icml::{IcmlOptions, StockKind};

/// The shortest secret accepted for the catalogue's URL.
pub const MIN_SECRET_LEN: usize = 16;

/// `icml:` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcmlConfig {
    /// Regenerate the catalogue on a schedule while the daemon runs (default off).
    pub enabled: bool,
    /// The file written (required when enabled; relative to the config file).
    pub path: Option<PathBuf>,
    /// How often (default 4 h, as the official generator's cron).
    pub every: Interval,
    /// The secret part of the URL the daemon serves it at: `GET /icml/<secret>` on the
    /// webhook listener (at least 16 characters; `SKLADSYNC_ICML_SECRET` overrides). Without
    /// one the catalogue is only written to `path`.
    pub secret: Secret,
    /// `<shop><name>`.
    pub shop_name: String,
    /// `<shop><company>`.
    pub company: String,
    /// Price type (name, externalCode or id); default the first sale price.
    pub price_type: Option<String>,
    /// Write purchase prices (`buyPrice`).
    pub purchase_price: bool,
    /// Include archived goods and folders.
    pub include_archived: bool,
    /// Folders (id or externalCode) left out, with everything under them.
    pub ignore_categories: Vec<String>,
    /// Leave out goods outside any folder.
    pub skip_without_category: bool,
    /// Include services (default on).
    pub services: bool,
    /// Include bundles (default on).
    pub bundles: bool,
    /// `quantity` (default), `free_stock`, `stock` or `none`.
    pub stock: StockKind,
    /// URL template of an offer (`{externalCode}`, `{productExternalCode}`, `{code}`,
    /// `{article}`, `{id}`).
    pub url_template: Option<String>,
    /// Product attribute holding a picture URL.
    pub picture_attribute: Option<String>,
    /// Product attributes with the dimensions (one, or length, width, height).
    pub dimension_attributes: Vec<String>,
}

impl Default for IcmlConfig {
    fn default() -> Self {
        let o = IcmlOptions::default();
        IcmlConfig {
            enabled: false,
            path: None,
            every: Interval(Duration::from_secs(4 * 3600)),
            secret: Secret::default(),
            shop_name: o.shop_name,
            company: o.company,
            price_type: o.price_type,
            purchase_price: o.purchase_price,
            include_archived: o.include_archived,
            ignore_categories: o.ignore_categories,
            skip_without_category: o.skip_without_category,
            services: o.services,
            bundles: o.bundles,
            stock: o.stock,
            url_template: o.url_template,
            picture_attribute: o.picture_attribute,
            dimension_attributes: o.dimension_attributes,
        }
    }
}

impl IcmlConfig {
    /// The generation options.
    pub fn options(&self) -> IcmlOptions {
        IcmlOptions {
            shop_name: self.shop_name.clone(),
            company: self.company.clone(),
            price_type: self.price_type.clone(),
            purchase_price: self.purchase_price,
            include_archived: self.include_archived,
            ignore_categories: self.ignore_categories.clone(),
            skip_without_category: self.skip_without_category,
            services: self.services,
            bundles: self.bundles,
            stock: self.stock,
            url_template: self.url_template.clone(),
            picture_attribute: self.picture_attribute.clone(),
            dimension_attributes: self.dimension_attributes.clone(),
        }
    }

    /// What is wrong with the section.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.enabled && self.path.is_none() {
            out.push("icml.path is required when icml.enabled is true".to_string());
        }
        if self.every.0.is_zero() {
            out.push("icml.every must be more than 0s".to_string());
        }
        let secret = self.secret.expose();
        if !secret.is_empty()
            && (secret.len() < MIN_SECRET_LEN
                || !secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            out.push(format!(
                "icml.secret must be at least {MIN_SECRET_LEN} characters of A-Z, a-z, 0-9, - and _"
            ));
        }
        if !matches!(self.dimension_attributes.len(), 0 | 1 | 3) {
            out.push(
                "icml.dimension_attributes takes one attribute (L/W/H in one value) or three (length, width, height)"
                    .to_string(),
            );
        }
        out
    }
}
