//! Stateful emulators of the parts of both APIs the rules use, served by axum on loopback.

pub mod faults;
pub mod moysklad;
pub mod retailcrm;
