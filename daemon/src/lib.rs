//! The skladsync daemon and what it stands on: the API clients, the state, the world the
//! rules look things up in, plan application, the operator server, the demo's emulated
//! accounts. The `skladsync` binary and the rules tooling live in `skladsync-runner`, which
//! re-exports these modules: a change in the tooling does not rebuild this crate.

pub mod apply;
pub mod clients;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod fleet;
pub mod icml;
pub mod ops;
pub mod recording;
pub mod state;
pub mod world;
