//! `skladsync demo`: both emulators, a sample shop, the daemon with the default rules for a
//! few cycles, and a summary of what was synced.

pub mod lab;
pub mod shop;
