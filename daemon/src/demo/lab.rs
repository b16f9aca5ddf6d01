//! Both emulators on loopback with the sample shop, and a runner config pointing at them:
//! what `skladsync demo`, `skladsync emulate` and the integration tests start from.

use std::path::Path;

use skladsync_emulators::moysklad::{
    EmulatorUser, MoyskladEmulator, MoyskladEmulatorConfig, RateLimitConfig as MsRateLimit,
};
use skladsync_emulators::retailcrm::{
    EmulatorConfig as CrmEmulatorConfig, RateLimitConfig as CrmRateLimit, RetailcrmEmulator,
    SeedReport,
};

use super::shop::{seed_crm, seed_ms, MsShop, SeedError};

/// The retailCRM emulator's API key (the daemon's own).
pub const CRM_KEY: &str = "emulator-key";
/// A second retailCRM key, a manager's: changes made with it are in the history with
/// `source: api` and `apiKey.current: false` for the daemon, so it syncs them (its own key's
/// changes are its echo).
pub const CRM_MANAGER_KEY: &str = "manager-key";
/// The МойСклад emulator's login.
pub const MS_LOGIN: &str = "admin@emulator";
/// The МойСклад emulator's password.
pub const MS_PASSWORD: &str = "emulator-password";
/// A second МойСклад user, a manager (own request budget, own `uid` in webhooks).
pub const MS_MANAGER_LOGIN: &str = "manager@emulator";
/// The manager's password.
pub const MS_MANAGER_PASSWORD: &str = "manager-password";

/// How to start a lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Keep the real request budgets (МойСклад 45 units / 3 s; retailCRM this many requests
    /// per second); `None` turns the emulators' limits off.
    pub crm_rate: Option<u32>,
    /// Keep МойСклад's request budget.
    pub ms_limits: bool,
    /// Seed the sample shop.
    pub seed: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            crm_rate: Some(50),
            ms_limits: true,
            seed: true,
        }
    }
}

/// The two emulators and the seeded shop.
#[derive(Debug)]
pub struct Lab {
    /// retailCRM.
    pub crm: RetailcrmEmulator,
    /// МойСклад.
    pub ms: MoyskladEmulator,
    /// What the CRM seed created.
    pub crm_seed: SeedReport,
    /// The МойСклад ids of the shop.
    pub shop: MsShop,
}

/// Starting a lab failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An emulator could not start.
    #[error("cannot start an emulator: {0}")]
    Start(String),
    /// Seeding failed.
    #[error(transparent)]
    Seed(#[from] SeedError),
}

impl Lab {
    /// Starts both emulators on loopback and seeds them.
    pub async fn start(opts: LabOptions) -> Result<Lab, LabError> {
        let crm_cfg = CrmEmulatorConfig::with_keys([CRM_KEY, CRM_MANAGER_KEY]).rate_limit(
            opts.crm_rate.map(|n| CrmRateLimit {
                per_second: n,
                status: 503,
            }),
        );
        let crm = RetailcrmEmulator::start(crm_cfg)
            .await
            .map_err(|e| LabError::Start(e.to_string()))?;
        let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
            users: vec![
                EmulatorUser::new(MS_LOGIN, MS_PASSWORD).with_token("emulator-token"),
                EmulatorUser::new(MS_MANAGER_LOGIN, MS_MANAGER_PASSWORD),
            ],
            rate_limit: opts.ms_limits.then(MsRateLimit::default),
            ..MoyskladEmulatorConfig::default()
        })
        .await
        .map_err(|e| LabError::Start(e.to_string()))?;
        let (crm_seed, shop) = if opts.seed {
            (seed_crm(&crm)?, seed_ms(&ms)?)
        } else {
            (SeedReport::default(), MsShop::default())
        };
        Ok(Lab {
            crm,
            ms,
            crm_seed,
            shop,
        })
    }

    /// A runner config (YAML) for this lab: credentials inline, webhooks on a free loopback
    /// port, history from the beginning. `intervals` is a YAML map (e.g.
    /// `{crm_poll: 1s, reconcile: 1s, stock: 2s, retry_min: 100ms}`).
    pub fn config_yaml(
        &self,
        rules: &Path,
        settings: &Path,
        state: &Path,
        intervals: &str,
        crm_rate: u32,
    ) -> String {
        format!(
            "crm:\n  url: {crm}\n  api_key: {key}\n  rate_limit: {crm_rate}\n  history_start: beginning\n\
             moysklad:\n  url: {ms}\n  login: {login}\n  password: {password}\n\
             rules:\n  dir: {rules}\n  settings: {settings}\n\
             state:\n  path: {state}\n\
             intervals: {intervals}\n\
             webhooks:\n  listen: 127.0.0.1:0\n",
            crm = self.crm.base_url(),
            key = CRM_KEY,
            ms = self.ms.base_url(),
            login = MS_LOGIN,
            password = MS_PASSWORD,
            rules = quote(rules),
            settings = quote(settings),
            state = quote(state),
        )
    }
}

fn quote(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap_or_default()
}
