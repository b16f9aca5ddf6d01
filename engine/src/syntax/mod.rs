//! Parsing expression text into a syntax tree.
//!
//! `pest` does the parsing (grammar in `grammar/expr.pest`); [`lower`] turns its pairs into
//! an owned [`ast::Expr`] with spans, applying operator precedence with a Pratt parser.

pub mod ast;
mod lower;
mod parser;
pub mod pretty;

pub use lower::{parse, SyntaxError};
pub use parser::Rule;
