//! Stateful emulators of the parts of both APIs the skladsync rules use (retailCRM and
//! МойСклад), served by axum on loopback. They follow the real services, not the skladsync
//! clients, and depend on neither the clients nor the engine.

pub mod faults;
pub mod moysklad;
pub mod retailcrm;
