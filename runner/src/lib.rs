//! The skladsync runner: the `skladsync` CLI and the rules tooling (`fmt`, `check`, `test`,
//! `diff`, `schema`, …). The daemon, the API clients and the state are the
//! `skladsync-daemon` crate, re-exported here under their old paths, so that a change in the
//! tooling rebuilds this crate and the binary but not the daemon.

pub use skladsync_daemon::{
    apply, clients, config, daemon, demo, fleet, icml, ops, recording, state, world,
};

pub mod cli;
pub mod commands;
pub mod tooling;
