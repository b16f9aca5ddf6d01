//! The skladsync runner: API clients, emulators, state, the daemon and the CLI.

pub mod clients;
pub mod emulator;
