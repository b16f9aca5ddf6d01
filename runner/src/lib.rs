//! The skladsync runner: API clients, state, the daemon and the CLI.

pub mod apply;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod fleet;
pub mod icml;
pub mod ops;
pub mod recording;
pub mod state;
pub mod tooling;
pub mod world;
