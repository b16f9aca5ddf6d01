//! `skladsync icml --config FILE`: the ICML catalogue (CAT-02), once.

use std::process::ExitCode;

use crate::cli::IcmlArgs;
use crate::clients::moysklad::{self as ms_client, Auth, MoyskladClient, MoyskladError};
use crate::config::Config;
use crate::icml::{generate, IcmlOptions, StockKind};

/// The МойСклад client a config describes (no webhook prefix: nothing is written).
pub fn moysklad_client(config: &Config) -> Result<MoyskladClient, MoyskladError> {
    let m = &config.moysklad;
    let auth = if m.token.is_empty() {
        Auth::basic(m.login.expose(), m.password.expose())
    } else {
        Auth::bearer(m.token.expose())
    };
    MoyskladClient::new(
        ms_client::ClientConfig::new(auth)
            .base_url(m.url.clone())
            .timeout(m.timeout.0)
            .connect_timeout(m.connect_timeout.0),
    )
}

/// The options: the config's, with the command line's on top.
fn options(config: &Config, args: &IcmlArgs) -> Result<IcmlOptions, String> {
    let mut o = config.icml.options();
    if let Some(p) = &args.price_type {
        o.price_type = Some(p.clone());
    }
    o.purchase_price |= args.purchase_price;
    o.include_archived |= args.include_archived;
    o.ignore_categories
        .extend(args.ignore_categories.iter().cloned());
    o.skip_without_category |= args.skip_without_category;
    o.services &= !args.no_services;
    o.bundles &= !args.no_bundles;
    if let Some(s) = &args.stock {
        o.stock = StockKind::parse(s).ok_or_else(|| {
            format!("--stock {s:?}: expected quantity, free_stock, stock or none")
        })?;
    }
    if let Some(t) = &args.url_template {
        o.url_template = Some(t.clone());
    }
    if let Some(a) = &args.picture_attribute {
        o.picture_attribute = Some(a.clone());
    }
    if !args.dimension_attributes.is_empty() {
        if !matches!(args.dimension_attributes.len(), 1 | 3) {
            return Err("--dimension-attribute is given once (L/W/H in one value) or three times (length, width, height)".into());
        }
        o.dimension_attributes = args.dimension_attributes.clone();
    }
    if let Some(n) = &args.shop_name {
        o.shop_name = n.clone();
    }
    Ok(o)
}

/// Writes the catalogue. Exit 0 when written, 1 on any error (the previous file is kept).
pub fn run(args: &IcmlArgs) -> ExitCode {
    super::run::init_logging("warn");
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    };
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let opts = match options(&config, args) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let Some(path) = args.out.clone().or_else(|| config.icml.path.clone()) else {
        return fail("no output file: give --out or set icml.path in the config".into());
    };
    let ms = match moysklad_client(&config) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(generate(&ms, &opts, &path)) {
        Ok(stats) => {
            println!(
                "{}: {} offers ({} services), {} categories, {} bytes",
                path.display(),
                stats.offers,
                stats.services,
                stats.categories,
                stats.bytes
            );
            for (why, n) in &stats.skipped {
                println!("  left out: {n} ({why})");
            }
            if !stats.unmatchable.is_empty() {
                println!(
                    "  codes the order rules cannot match, e.g.: {}",
                    stats.unmatchable.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}
