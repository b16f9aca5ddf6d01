//! The skladsync runner: API clients, emulators, state, the daemon and the CLI.

pub mod cli;
pub mod clients;
pub mod commands;
pub mod emulator;
