//! The pest parser generated from `grammar/expr.pest`.
#![allow(missing_docs)]

/// The generated parser. Its `Rule` enum carries the grammar's `///` docs.
#[derive(pest_derive::Parser)]
#[grammar = "../grammar/expr.pest"]
pub struct ExprParser;
