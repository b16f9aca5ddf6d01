//! Diagnostics: what is wrong with a rule set, where, rendered like rustc.
//!
//! Every diagnostic has a stable code (see [`codes`]), a severity, a message, and when it
//! can be pinned to text, the file and byte range of that text. [`Diagnostics::render`]
//! draws them with the offending line and a caret.

use std::fmt;
use std::sync::Arc;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor};

/// Stable diagnostic codes. Never reuse a code once it has shipped.
pub mod codes {
    /// A file could not be read.
    pub const IO: &str = "E001";
    /// A YAML file is not well-formed YAML.
    pub const YAML: &str = "E002";
    /// A YAML file does not have the shape of a rule file.
    pub const SHAPE: &str = "E003";
    /// An expression does not parse.
    pub const SYNTAX: &str = "E101";
    /// A template does not parse.
    pub const TEMPLATE: &str = "E102";
    /// A name that is not in scope.
    pub const UNKNOWN_NAME: &str = "E201";
    /// A function that does not exist.
    pub const UNKNOWN_FUNCTION: &str = "E202";
    /// A function called with the wrong number of arguments.
    pub const ARITY: &str = "E203";
    /// A `settings.*` key that the settings file does not define.
    pub const UNKNOWN_SETTING: &str = "E204";
    /// Two rules with the same id.
    pub const DUPLICATE_RULE: &str = "E205";
    /// A reference to an `as` name that does not exist (yet).
    pub const UNKNOWN_RESULT: &str = "E206";
    /// Sub-flows or functions that call each other in a cycle.
    pub const CYCLE: &str = "E207";
    /// A rule that can never fire.
    pub const NEVER_FIRES: &str = "E208";
    /// A rule listens to an event that no file declares.
    pub const UNKNOWN_EVENT: &str = "E209";
    /// A `use` of a flow that does not exist.
    pub const UNKNOWN_FLOW: &str = "E210";
    /// A flow called with parameters it does not declare, or without ones it needs.
    pub const FLOW_PARAMS: &str = "E211";
    /// A lambda where none is allowed, or a missing lambda.
    pub const LAMBDA: &str = "E212";
    /// An effect that is malformed (no verb, two verbs, missing fields).
    pub const EFFECT: &str = "E213";
    /// Two definitions of the same name (function, flow, event, `let`).
    pub const DUPLICATE_NAME: &str = "E214";
    /// A path below an event field that no document of the event can have (a warning).
    pub const UNKNOWN_FIELD: &str = "E215";
    /// A shape that names a shape nobody declares, or a field the event does not have.
    pub const UNKNOWN_SHAPE: &str = "E216";
    /// A flow that no rule uses, directly or through other flows (a warning).
    pub const UNUSED_FLOW: &str = "E217";
    /// A layer disables a rule that no layer below defines.
    pub const UNKNOWN_DISABLED: &str = "E218";
    /// A settings check declared by the rules failed.
    pub const SETTINGS_CHECK: &str = "E301";
    /// A settings check could not be evaluated.
    pub const SETTINGS_CHECK_ERROR: &str = "E302";
    /// A setting whose value has the wrong type (text for a boolean, text for a list, …).
    pub const SETTING_TYPE: &str = "E303";
    /// A setting whose value is not one of those allowed, or out of range.
    pub const SETTING_VALUE: &str = "E304";
    /// A key in the settings file that is not a setting.
    pub const UNKNOWN_SETTING_KEY: &str = "E305";
    /// A setting the settings file leaves out.
    pub const MISSING_SETTING: &str = "E306";
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; does not stop anything.
    Note,
    /// Suspicious; the rule set still loads.
    Warning,
    /// The rule set cannot be used.
    Error,
}

/// A file that diagnostics can point into.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as shown to the user.
    pub name: String,
    /// The whole text.
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, byte: usize) -> (usize, usize) {
        let byte = byte.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, byte)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A place in a source file: a byte range.
#[derive(Clone, Debug)]
pub struct Location {
    /// The file.
    pub file: Arc<SourceFile>,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Location {
    /// `path:line:col` of the start.
    pub fn position(&self) -> String {
        let (line, col) = self.file.line_col(self.start);
        format!("{}:{line}:{col}", self.file.name)
    }
}

/// One problem found in a rule set or settings file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Stable code, e.g. `E201`.
    pub code: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// Where, when it can be pinned to text.
    pub location: Option<Location>,
    /// A short label under the caret.
    pub label: String,
    /// Help and notes shown under the snippet.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            location: None,
            label: String::new(),
            notes: Vec::new(),
        }
    }

    /// A warning.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Pins the diagnostic to a location.
    pub fn at(mut self, location: Option<Location>) -> Diagnostic {
        self.location = location;
        self
    }

    /// Sets the label under the caret.
    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    /// Adds a help or note line.
    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `path:line:col`, or `-` when the diagnostic has no location.
    pub fn position(&self) -> String {
        self.location
            .as_ref()
            .map_or_else(|| "-".to_owned(), Location::position)
    }
}

/// All diagnostics of one load, in the order they were found.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    /// The diagnostics.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Whether any is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Whether there are none at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of errors and of warnings.
    pub fn counts(&self) -> (usize, usize) {
        let errors = self.items.iter().filter(|d| d.is_error()).count();
        let warnings = self
            .items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count();
        (errors, warnings)
    }

    /// Sorts by file, then position, keeping the order of equal positions.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let key = |d: &Diagnostic| d.location.as_ref().map(|l| (l.file.name.clone(), l.start));
            key(a).cmp(&key(b))
        });
    }

    /// Renders every diagnostic like rustc: code, message, `path:line:col`, the line and a
    /// caret. With `color`, ANSI colours are used.
    pub fn render(&self, color: bool) -> String {
        let mut files = SimpleFiles::new();
        let mut ids: Vec<(*const SourceFile, usize)> = Vec::new();
        let config = term::Config::default();
        let mut out: Vec<u8> = Vec::new();
        for d in &self.items {
            let mut cs = match d.severity {
                Severity::Error => CsDiagnostic::error(),
                Severity::Warning => CsDiagnostic::warning(),
                Severity::Note => CsDiagnostic::note(),
            }
            .with_code(d.code)
            .with_message(&d.message)
            .with_notes(d.notes.clone());
            if let Some(loc) = &d.location {
                let key = Arc::as_ptr(&loc.file);
                let id = match ids.iter().find(|(k, _)| *k == key) {
                    Some((_, id)) => *id,
                    None => {
                        let id = files.add(loc.file.name.clone(), loc.file.text.clone());
                        ids.push((key, id));
                        id
                    }
                };
                let end = loc.end.max(loc.start + 1).min(loc.file.text.len().max(1));
                let start = loc.start.min(end);
                cs = cs.with_labels(vec![
                    Label::primary(id, start..end).with_message(d.label.clone())
                ]);
            }
            let result = if color {
                let mut w = termcolor::Ansi::new(&mut out);
                term::emit(&mut w, &config, &files, &cs)
            } else {
                let mut w = termcolor::NoColor::new(&mut out);
                term::emit(&mut w, &config, &files, &cs)
            };
            if let Err(e) = result {
                out.extend_from_slice(
                    format!("{}[{}]: {} ({e})\n", "error", d.code, d.message).as_bytes(),
                );
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}
