//! HTTP clients of the two systems. They know API mechanics (auth, paging, rate limits,
//! envelopes), never sync behaviour: that lives in `rules/`.

pub mod moysklad;
pub mod retailcrm;
