//! A YAML tree that remembers where every node is, read beside serde_yaml.
//!
//! serde_yaml reads rule files into the typed model but reports no positions for values.
//! This tree is read from the same text with yaml-rust2, which keeps marks, so an
//! expression found at `rules[3].when[1].check` can be pinned to `file:line:col`.

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::{Location, SourceFile};

/// One node of the marked tree. `at` is the byte offset where the node starts.
#[derive(Clone, Debug)]
pub enum YNode {
    /// A scalar with its text and quoting style.
    Scalar {
        /// The scalar's value.
        text: String,
        /// How it was written.
        style: TScalarStyle,
        /// Byte offset of the token (the quote, for quoted scalars).
        at: usize,
    },
    /// A sequence.
    Seq {
        /// Items in order.
        items: Vec<YNode>,
        /// Byte offset of the sequence.
        at: usize,
    },
    /// A mapping; keys are kept as text with their own offsets.
    Map {
        /// Entries in order: key text, key offset, value.
        entries: Vec<(String, usize, YNode)>,
        /// Byte offset of the mapping.
        at: usize,
    },
}

/// One step of a path into the tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Seg {
        Seg::Key(s.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Index(i)
    }
}

impl YNode {
    /// Where the node starts.
    pub fn at(&self) -> usize {
        match self {
            YNode::Scalar { at, .. } | YNode::Seq { at, .. } | YNode::Map { at, .. } => *at,
        }
    }

    /// The child at one step.
    pub fn child(&self, seg: &Seg) -> Option<&YNode> {
        match (self, seg) {
            (YNode::Map { entries, .. }, Seg::Key(k)) => entries
                .iter()
                .rev()
                .find(|(key, _, _)| key == k)
                .map(|e| &e.2),
            (YNode::Seq { items, .. }, Seg::Index(i)) => items.get(*i),
            _ => None,
        }
    }

    /// The node at a path.
    pub fn find(&self, path: &[Seg]) -> Option<&YNode> {
        path.iter().try_fold(self, |node, seg| node.child(seg))
    }

    /// The byte offset of a mapping key at a path (the last step must be a key).
    pub fn key_at(&self, path: &[Seg]) -> Option<usize> {
        let (last, parent) = path.split_last()?;
        let Seg::Key(k) = last else {
            return self.find(path).map(YNode::at);
        };
        match self.find(parent)? {
            YNode::Map { entries, .. } => entries
                .iter()
                .rev()
                .find(|(key, _, _)| key == k)
                .map(|e| e.1),
            _ => None,
        }
    }
}

/// A parsed YAML file with its marked tree.
#[derive(Clone, Debug)]
pub struct MarkedFile {
    /// The file, for diagnostics.
    pub source: Arc<SourceFile>,
    /// The root node (an empty mapping for an empty file).
    pub root: YNode,
}

/// A YAML syntax error with its byte offset.
#[derive(Debug)]
pub struct YamlError {
    /// What the YAML parser said.
    pub message: String,
    /// Where.
    pub at: usize,
}

impl YamlError {
    /// The error as a diagnostic with its code frame and a hint that fits it; `what` names
    /// the file's role ("", "the settings file ", "the case ").
    pub fn diagnostic(&self, source: &Arc<SourceFile>, what: &str) -> crate::Diagnostic {
        let mut d = crate::Diagnostic::error(
            crate::diagnostic::codes::YAML,
            format!("{what}not valid YAML: {}", self.message),
        )
        .at(Some(Location {
            file: source.clone(),
            start: self.at,
            end: self.at + 1,
        }));
        if let Some(h) = yaml_hint(&self.message, &source.text, self.at) {
            d = d.note(format!("help: {h}"));
        }
        d
    }
}

const QUOTE_HINT: &str = "quote an expression that contains `: ` or starts with `{`, `[`, `!`, `&`, `*`, `@` or `|`, e.g. 'lookup(\"a\", \"b\", {inn: x})', or write it as a block with `|`";
const INDENT_HINT: &str = "check the indentation of this line and the one above: the keys of one map, and the `-` items of one list, start in the same column; a value nested under a key is indented deeper than the key";

/// A hint that fits a YAML syntax error: tabs, indentation, unclosed quotes, or text that
/// YAML reads as syntax and must be quoted.
pub fn yaml_hint(message: &str, text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[line_start..line_end];
    let m = message.to_ascii_lowercase();
    if m.contains("tab") || line.starts_with('\t') || line.trim_start_matches(' ').starts_with('\t')
    {
        return Some(
            "YAML indents with spaces only: replace the tab at the start of this line with spaces"
                .to_owned(),
        );
    }
    if m.contains("quoted scalar") && m.contains("end of stream") {
        return Some("a quote opened here is never closed".to_owned());
    }
    if m.contains("indentation")
        || m.contains("did not find expected key")
        || m.contains("did not find expected '-'")
        || m.contains("block sequence entries are not allowed")
    {
        return Some(INDENT_HINT.to_owned());
    }
    if m.contains("mapping values are not allowed") {
        // `key: a: b` — a second `: ` after the key's own: the value needs quotes. Else the
        // line is indented under a plain value.
        let before = &text[line_start..at];
        let stripped = before.trim_start().trim_start_matches("- ");
        let first = stripped.find(": ");
        return Some(match first {
            Some(i) if line_start + (before.len() - stripped.len()) + i + 1 < at => {
                QUOTE_HINT.to_owned()
            }
            _ => INDENT_HINT.to_owned(),
        });
    }
    if m.contains("flow mapping")
        || m.contains("flow sequence")
        || m.contains("cannot start any token")
        || m.contains("unexpected character")
        || m.contains("unknown anchor")
        || m.contains("plain scalar cannot start")
        || m.contains("tag")
        || m.contains("anchor or alias")
    {
        return Some(QUOTE_HINT.to_owned());
    }
    None
}

impl MarkedFile {
    /// Parses YAML text into a marked tree.
    pub fn parse(source: Arc<SourceFile>) -> Result<MarkedFile, YamlError> {
        prescan_depth(&source.text)?;
        let char_to_byte = CharIndex::new(&source.text);
        let mut builder = Builder {
            stack: Vec::new(),
            skipping: 0,
            too_deep: None,
            anchors: HashMap::new(),
            root: None,
            chars: &char_to_byte,
        };
        let mut parser = Parser::new_from_str(&source.text);
        parser.load(&mut builder, false).map_err(|e| YamlError {
            message: e.info().to_owned(),
            at: char_to_byte.byte(e.marker()),
        })?;
        if let Some(at) = builder.too_deep {
            return Err(YamlError {
                message: format!("nested more than {MAX_YAML_DEPTH} levels deep"),
                at,
            });
        }
        let root = builder.root.unwrap_or(YNode::Map {
            entries: Vec::new(),
            at: 0,
        });
        Ok(MarkedFile { source, root })
    }

    /// The location of the node (or, failing that, of the nearest parent) at a path.
    pub fn locate(&self, path: &[Seg]) -> Location {
        let mut node = &self.root;
        for seg in path {
            match node.child(seg) {
                Some(child) => node = child,
                None => break,
            }
        }
        let start = node.at();
        Location {
            file: self.source.clone(),
            start,
            end: start + token_len(&self.source.text, start),
        }
    }

    /// The location of a mapping key at a path, falling back to [`MarkedFile::locate`].
    pub fn locate_key(&self, path: &[Seg]) -> Location {
        match self.root.key_at(path) {
            Some(start) => Location {
                file: self.source.clone(),
                start,
                end: start + token_len(&self.source.text, start),
            },
            None => self.locate(path),
        }
    }

    /// Maps byte offsets inside a scalar's value back to the file.
    pub fn origin(&self, path: &[Seg]) -> Origin {
        match self.root.find(path) {
            Some(YNode::Scalar { text, style, at }) => {
                Origin::for_scalar(self.source.clone(), text, *style, *at)
            }
            _ => Origin::fixed(self.locate(path)),
        }
    }
}

/// The YAML parser recurses once per nesting level; refuse absurd nesting before it sees
/// the text (flow brackets, or indentation deeper than any real file has).
fn prescan_depth(text: &str) -> Result<(), YamlError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut line_start = true;
    let mut indent = 0usize;
    let mut prev = ' ';
    let mut in_comment = false;
    for (at, c) in text.char_indices() {
        if c == '\n' {
            line_start = true;
            indent = 0;
            in_comment = false;
            quote = None;
            prev = c;
            continue;
        }
        if line_start {
            if c == ' ' {
                indent += 1;
                if indent > 4 * MAX_YAML_DEPTH {
                    return Err(YamlError {
                        message: "indented too deeply".to_owned(),
                        at,
                    });
                }
                continue;
            }
            line_start = false;
        }
        if in_comment {
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if prev == ' ' || prev == '\n' => in_comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_YAML_DEPTH {
                    return Err(YamlError {
                        message: format!("nested more than {MAX_YAML_DEPTH} levels deep"),
                        at,
                    });
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    Ok(())
}

/// Length of the token starting at `start`: up to the end of the line, at most 40 bytes.
fn token_len(text: &str, start: usize) -> usize {
    let rest = text.get(start..).unwrap_or("");
    let line = rest.split('\n').next().unwrap_or("").trim_end();
    let mut len = line.len().min(40);
    while len > 0 && !line.is_char_boundary(len) {
        len -= 1;
    }
    len.max(1)
}

/// Where the text of one scalar came from: maps an offset in the value to an offset in
/// the file.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file.
    pub file: Arc<SourceFile>,
    /// Pieces: (offset in the value, offset in the file), sorted by the first.
    pieces: Vec<(usize, usize)>,
    /// Whether some lines could not be found verbatim (escapes, folding).
    pub approximate: bool,
}

impl Origin {
    /// An origin that maps every offset to one location.
    pub fn fixed(loc: Location) -> Origin {
        Origin {
            file: loc.file,
            pieces: vec![(0, loc.start)],
            approximate: true,
        }
    }

    /// An origin for a whole file whose text is the value itself.
    pub fn whole(file: Arc<SourceFile>) -> Origin {
        Origin {
            file,
            pieces: vec![(0, 0)],
            approximate: false,
        }
    }

    fn for_scalar(file: Arc<SourceFile>, value: &str, style: TScalarStyle, at: usize) -> Origin {
        let base = match style {
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => at + 1,
            _ => at,
        };
        let text = file.text.as_str();
        let mut pieces = Vec::new();
        let mut approximate = false;
        let mut cursor = base.min(text.len());
        let mut value_off = 0;
        for line in value.split('\n') {
            if !line.is_empty() {
                let window_end = (cursor + line.len() * 4 + 256).min(text.len());
                let window = text.get(cursor..window_end).unwrap_or("");
                match window.find(line) {
                    Some(i) => {
                        pieces.push((value_off, cursor + i));
                        cursor += i + line.len();
                    }
                    None => {
                        approximate = true;
                        pieces.push((value_off, base));
                    }
                }
            }
            value_off += line.len() + 1;
        }
        if pieces.is_empty() {
            pieces.push((0, base));
        }
        Origin {
            file,
            pieces,
            approximate,
        }
    }

    /// The file location of a byte range of the value.
    pub fn locate(&self, start: usize, end: usize) -> Location {
        let piece = self
            .pieces
            .iter()
            .rev()
            .find(|(v, _)| *v <= start)
            .or_else(|| self.pieces.first())
            .copied()
            .unwrap_or((0, 0));
        let file_start = piece.1 + start.saturating_sub(piece.0);
        let len = end.saturating_sub(start);
        let file_start = file_start.min(self.file.text.len());
        Location {
            file: self.file.clone(),
            start: file_start,
            end: (file_start + len.max(1)).min(self.file.text.len().max(file_start + 1)),
        }
    }
}

/// Converts yaml-rust2's marks to byte offsets, from their line and column: the mark's
/// `index` drifts on some lines (block scalars with non-ASCII text), line and column do not.
struct CharIndex<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl<'t> CharIndex<'t> {
    fn new(text: &'t str) -> CharIndex<'t> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        CharIndex { text, line_starts }
    }

    /// The byte offset of a mark: `line` counts from 1, `col` (in characters) from 0.
    fn byte(&self, mark: &Marker) -> usize {
        let Some(&start) = mark
            .line()
            .checked_sub(1)
            .and_then(|l| self.line_starts.get(l))
        else {
            return self.text.len();
        };
        let line = self.text.get(start..).unwrap_or("");
        let within = line
            .char_indices()
            .nth(mark.col())
            .map_or_else(|| line.find('\n').unwrap_or(line.len()), |(i, _)| i);
        start + within
    }
}

enum Frame {
    Seq(Vec<YNode>, usize, usize),
    Map(
        Vec<(String, usize, YNode)>,
        Option<(String, usize)>,
        usize,
        usize,
    ),
}

/// How deeply YAML may nest before it is refused.
const MAX_YAML_DEPTH: usize = 200;

struct Builder<'a> {
    stack: Vec<Frame>,
    /// Events skipped below the depth limit (their nesting level), and where it was hit.
    skipping: usize,
    too_deep: Option<usize>,
    anchors: HashMap<usize, YNode>,
    root: Option<YNode>,
    chars: &'a CharIndex<'a>,
}

impl Builder<'_> {
    fn finish(&mut self, node: YNode, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                None => {
                    let key = match &node {
                        YNode::Scalar { text, .. } => text.clone(),
                        _ => String::from("<complex key>"),
                    };
                    *pending = Some((key, node.at()));
                }
                Some((key, key_at)) => entries.push((key, key_at, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = self.chars.byte(&mark);
        if self.skipping > 0 {
            match ev {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.skipping += 1,
                Event::SequenceEnd | Event::MappingEnd => self.skipping -= 1,
                _ => {}
            }
            return;
        }
        if matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..))
            && self.stack.len() >= MAX_YAML_DEPTH
        {
            self.skipping = 1;
            self.too_deep.get_or_insert(at);
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                self.finish(YNode::Scalar { text, style, at }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), at, anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Vec::new(), None, at, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(items, at, anchor)) => {
                    let at = items.first().map_or(at, YNode::at);
                    self.finish(YNode::Seq { items, at }, anchor);
                }
                Some(Frame::Map(entries, _, at, anchor)) => {
                    let at = entries.first().map_or(at, |e| e.1);
                    self.finish(YNode::Map { entries, at }, anchor);
                }
                None => {}
            },
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(YNode::Scalar {
                    text: String::new(),
                    style: TScalarStyle::Plain,
                    at,
                });
                self.finish(node, 0);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> MarkedFile {
        MarkedFile::parse(Arc::new(SourceFile {
            name: "t.yaml".into(),
            text: text.into(),
        }))
        .unwrap()
    }

    fn hint(text: &str) -> String {
        let source = Arc::new(SourceFile {
            name: "t.yaml".into(),
            text: text.into(),
        });
        let e = MarkedFile::parse(source.clone()).unwrap_err();
        let d = e.diagnostic(&source, "");
        format!("{} {}", d.message, d.notes.join(" "))
    }

    #[test]
    fn yaml_errors_get_a_hint_that_fits() {
        let quote = "quote an expression";
        let indent = "check the indentation";
        assert!(hint("a:\n  b: lookup(\"x\", {inn: 1})\n").contains(quote));
        assert!(hint("a:\n  b: x\n c: y\n").contains(indent));
        assert!(hint("a:\n  - x\n - y\n").contains(indent));
        assert!(hint("a:\n  b: x\n    c: y\n").contains(indent));
        assert!(hint("a:\n\tb: x\n").contains("tab"));
        assert!(hint("a: \"open\n").contains("never closed"));
        assert!(!hint("a:\n  b: x\n c: y\n").contains(quote));
    }

    #[test]
    fn positions_hold_after_non_ascii_block_scalars() {
        let f = file("a: |\n  Доставка по Москве — «быстро»\n  ещё строка\nb: x + 1\n");
        assert_eq!(f.locate(&[Seg::from("b")]).position(), "t.yaml:4:4");
        assert_eq!(f.locate_key(&[Seg::from("b")]).position(), "t.yaml:4:1");
    }

    #[test]
    fn locates_values_and_keys() {
        let f = file("a:\n  - x: \"q + 1\"\n    é: |\n      line one\n      line two\n");
        let path = [Seg::from("a"), Seg::from(0), Seg::from("x")];
        assert_eq!(f.locate(&path).position(), "t.yaml:2:8");
        let origin = f.origin(&path);
        assert_eq!(origin.locate(4, 5).position(), "t.yaml:2:13");
        let block = [Seg::from("a"), Seg::from(0), Seg::from("é")];
        let origin = f.origin(&block);
        // "line two" starts at value offset 9
        assert_eq!(origin.locate(14, 17).position(), "t.yaml:5:12");
        assert_eq!(f.locate_key(&block).position(), "t.yaml:3:5");
    }
}
