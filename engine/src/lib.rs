//! The skladsync rules engine (work in progress).
