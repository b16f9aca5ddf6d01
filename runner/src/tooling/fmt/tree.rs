//! A YAML file read for formatting: its tree with the byte span of every node, anchors and
//! aliases by name, and every comment attached to the entry or item it belongs to.
//!
//! yaml-rust2's parser gives the structure; its scanner gives every token's position,
//! from which the extent of each scalar is found, so that any `#` outside a token is a
//! comment. Own-line comments belong to the entry or item that follows them (or, when
//! they are indented deeper than that and a block above has just ended, to the end of
//! that block); a comment after something on the same line belongs to the innermost
//! entry or item that starts on that line.

use std::collections::{BTreeMap, HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, Scanner, TScalarStyle, TokenType};

/// A comment line or a blank line, kept around entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A blank line (runs of them are one).
    Blank,
    /// A comment, from `#` to the end of the line.
    Comment(String),
}

/// A comment at the end of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailing {
    /// From `#` to the end of the line.
    pub text: String,
    /// The column it was at.
    pub col: usize,
}

/// A scalar.
#[derive(Clone, Debug)]
pub struct Scalar {
    /// Its value (for plain scalars, the text as written, before YAML resolves it).
    pub value: String,
    /// How it was written.
    pub style: TScalarStyle,
    /// Its text in the file.
    pub src: String,
}

/// What a node is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence; `true` when written in flow style (`[a, b]`).
    Seq(Vec<Node>, bool),
    /// A mapping of (key, value); `true` when written in flow style.
    Map(Vec<(Node, Node)>, bool),
    /// `*name`.
    Alias(String),
}

/// A node with its place in the file.
#[derive(Clone, Debug)]
pub struct Node {
    /// Unique in the tree: comments are attached by id.
    pub id: usize,
    /// Byte offset of its start.
    pub at: usize,
    /// Byte offset of its end.
    pub end: usize,
    /// `&name`, if anchored.
    pub anchor: Option<String>,
    /// What it is.
    pub kind: Kind,
}

/// Comments, by the id of the entry key or item they belong to.
#[derive(Clone, Debug, Default)]
pub struct Comments {
    /// Lines above the first node that are not about it (the file's own header).
    pub header: Vec<Line>,
    /// Lines above an entry (by key id) or an item (by node id).
    pub leading: HashMap<usize, Vec<Line>>,
    /// A comment at the end of the line of an entry or item.
    pub trailing: HashMap<usize, Trailing>,
    /// Lines after the last child of a collection (by collection id).
    pub tail: HashMap<usize, Vec<Line>>,
    /// Lines after the last node.
    pub footer: Vec<Line>,
}

impl Comments {
    /// Every comment text, sorted (for checking that none was lost).
    pub fn all_texts(&self) -> Vec<String> {
        let lines = self
            .header
            .iter()
            .chain(self.leading.values().flatten())
            .chain(self.tail.values().flatten())
            .chain(&self.footer);
        let mut out: Vec<String> = lines
            .filter_map(|l| match l {
                Line::Comment(c) => Some(c.clone()),
                Line::Blank => None,
            })
            .chain(self.trailing.values().map(|t| t.text.clone()))
            .collect();
        out.sort();
        out
    }

    /// Whether the entry or item has any comment.
    pub fn has_any(&self, id: usize) -> bool {
        self.trailing.contains_key(&id)
            || self
                .leading
                .get(&id)
                .is_some_and(|l| l.iter().any(|x| matches!(x, Line::Comment(_))))
            || self
                .tail
                .get(&id)
                .is_some_and(|l| l.iter().any(|x| matches!(x, Line::Comment(_))))
    }
}

/// A parsed file.
#[derive(Clone, Debug)]
pub struct Tree {
    /// The root (none for a file of comments only).
    pub root: Option<Node>,
    /// The comments.
    pub comments: Comments,
    /// Whether the document starts with `---`.
    pub explicit_start: bool,
}

/// Why a file cannot be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TreeError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

struct Text<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Text<'a> {
    fn new(text: &'a str) -> Text<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Text { text, line_starts }
    }

    /// The byte offset of a mark, from its line and column: yaml-rust2 counts the index of
    /// marks after a block scalar's non-ASCII lines in bytes, not characters, but keeps lines
    /// right (and columns restart on each line).
    fn byte(&self, m: &Marker) -> usize {
        let Some(&start) = self.line_starts.get(m.line().saturating_sub(1)) else {
            return self.text.len();
        };
        let line = self.line_text(m.line().saturating_sub(1));
        let within = line
            .char_indices()
            .nth(m.col())
            .map_or(line.len(), |(i, _)| i);
        start + within
    }

    /// 0-based line of a byte offset.
    fn line(&self, at: usize) -> usize {
        match self.line_starts.binary_search(&at) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// 0-based column (in chars) of a byte offset.
    fn col(&self, at: usize) -> usize {
        let start = self.line_starts[self.line(at)];
        self.text.get(start..at).map_or(0, |s| s.chars().count())
    }

    fn line_text(&self, line: usize) -> &str {
        let start = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        let end = self
            .line_starts
            .get(line + 1)
            .map_or(self.text.len(), |e| e - 1);
        self.text.get(start..end).unwrap_or("")
    }

    fn err(&self, at: usize, message: impl Into<String>) -> TreeError {
        TreeError {
            line: self.line(at) + 1,
            message: message.into(),
        }
    }
}

fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

/// Where a scalar that starts at `start` ends; `limit` is where the next token starts.
fn scalar_end(t: &Text<'_>, start: usize, style: TScalarStyle, limit: usize) -> usize {
    let text = t.text;
    match style {
        TScalarStyle::DoubleQuoted | TScalarStyle::SingleQuoted => {
            let q = if style == TScalarStyle::DoubleQuoted {
                '"'
            } else {
                '\''
            };
            let mut i = start + 1;
            while let Some(c) = char_at(text, i) {
                if q == '"' && c == '\\' {
                    i += 1;
                    i += char_at(text, i).map_or(1, char::len_utf8);
                    continue;
                }
                if c == q {
                    if q == '\'' && char_at(text, i + 1) == Some('\'') {
                        i += 2;
                        continue;
                    }
                    return i + 1;
                }
                i += c.len_utf8();
            }
            text.len()
        }
        TScalarStyle::Plain => {
            let region = text.get(start..limit.max(start)).unwrap_or("");
            let mut last = 0;
            let mut prev = 'x';
            for (i, c) in region.char_indices() {
                if c == '#' && prev.is_whitespace() {
                    break;
                }
                if !c.is_whitespace() {
                    last = i + c.len_utf8();
                }
                prev = c;
            }
            start + last
        }
        TScalarStyle::Literal | TScalarStyle::Folded => {
            let header_line = t.line(start);
            let mut end = start + indicator_len(text, start);
            let mut indent: Option<usize> = None;
            let mut line = header_line + 1;
            while line < t.line_starts.len() && t.line_starts[line] < limit {
                let l = t.line_text(line);
                if l.trim().is_empty() {
                    line += 1;
                    continue;
                }
                let ind = l.len() - l.trim_start_matches(' ').len();
                let need = *indent.get_or_insert(ind);
                if ind < need {
                    break;
                }
                end = t.line_starts[line] + l.len();
                line += 1;
            }
            end
        }
    }
}

/// Length of a block scalar's indicator: `|`, `>-`, `|2+`…
fn indicator_len(text: &str, start: usize) -> usize {
    text.get(start..)
        .unwrap_or("")
        .char_indices()
        .find(|(i, c)| *i > 0 && !matches!(c, '-' | '+' | '0'..='9'))
        .map_or(1, |(i, _)| i)
}

/// A place comments can belong to: an entry (by key id) or an item.
#[derive(Clone, Debug)]
struct Slot {
    id: usize,
    at: usize,
    depth: usize,
    /// The collection it is in.
    container: usize,
    /// For a scalar value: the entry it belongs to (comments move to the key).
    redirect: Option<usize>,
}

#[derive(Clone, Debug)]
struct Container {
    end: usize,
    child_col: usize,
    flow: bool,
    parent: Option<usize>,
    /// The slot whose value this collection is.
    holder: Option<usize>,
}

/// Reads a file for formatting.
pub fn parse(text: &str) -> Result<Tree, TreeError> {
    let t = Text::new(text);
    // Tokens, with where each starts.
    let mut tokens: Vec<(usize, TokenType)> = Vec::new();
    let mut scanner = Scanner::new(text.chars());
    for tok in scanner.by_ref() {
        tokens.push((t.byte(&tok.0), tok.1));
    }
    if let Some(e) = scanner.get_error() {
        return Err(t.err(t.byte(e.marker()), format!("not valid YAML: {}", e.info())));
    }
    let mut anchors = Vec::new();
    let mut explicit_start = false;
    let mut covered: Vec<(usize, usize)> = Vec::new();
    let mut scalar_ends: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut token_ends: Vec<usize> = Vec::new();
    let mut docs = 0;
    for (i, (at, tok)) in tokens.iter().enumerate() {
        let next = tokens
            .iter()
            .skip(i + 1)
            .map(|(a, _)| *a)
            .find(|a| a > at)
            .unwrap_or(text.len());
        let end = match tok {
            TokenType::Scalar(style, _) => {
                if matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) {
                    // The token is marked where the content starts; the header (`|-`) is
                    // the first `|` or `>` after the token before, and a comment may sit
                    // between it and the content.
                    let from = i.checked_sub(1).map_or(0, |j| token_ends[j]);
                    let head = text
                        .get(from..*at)
                        .and_then(|s| s.find(['|', '>']))
                        .map_or(*at, |k| from + k);
                    let e = scalar_end(&t, head, *style, next);
                    scalar_ends.insert(*at, (head, e));
                    covered.push((head, head + indicator_len(text, head)));
                    let content = t.line_starts.get(t.line(head) + 1).copied().unwrap_or(e);
                    if content < e {
                        covered.push((content, e));
                    }
                    token_ends.push(e);
                    continue;
                }
                let e = scalar_end(&t, *at, *style, next);
                scalar_ends.insert(*at, (*at, e));
                e
            }
            TokenType::Anchor(name) => {
                anchors.push(name.clone());
                at + 1 + name.len()
            }
            TokenType::Alias(name) => at + 1 + name.len(),
            TokenType::Tag(..) => {
                return Err(t.err(*at, "YAML tags (`!…`) are not supported by fmt"))
            }
            TokenType::VersionDirective(..) | TokenType::TagDirective(..) => {
                return Err(t.err(*at, "YAML directives (`%…`) are not supported by fmt"))
            }
            TokenType::DocumentStart => {
                docs += 1;
                explicit_start = true;
                at + 3
            }
            TokenType::DocumentEnd => {
                return Err(t.err(*at, "document end markers (`...`) are not supported by fmt"))
            }
            TokenType::BlockEntry
            | TokenType::FlowEntry
            | TokenType::FlowSequenceStart
            | TokenType::FlowSequenceEnd
            | TokenType::FlowMappingStart
            | TokenType::FlowMappingEnd
            | TokenType::Value => at + 1,
            TokenType::Key if char_at(text, *at) == Some('?') => {
                return Err(t.err(*at, "complex keys (`? …`) are not supported by fmt"))
            }
            _ => *at,
        };
        if end > *at {
            covered.push((*at, end));
        }
        token_ends.push(end.max(*at));
    }
    if docs > 1 {
        return Err(t.err(
            0,
            "a rule file holds one YAML document; this one has several",
        ));
    }
    covered.sort_unstable();
    // Comments: any `#` outside tokens.
    let mut comments: Vec<(usize, String, bool)> = Vec::new();
    let mut cov = covered.iter().peekable();
    let mut i = 0;
    while i < text.len() {
        while cov.peek().is_some_and(|(_, e)| *e <= i) {
            cov.next();
        }
        if let Some((s, e)) = cov.peek() {
            if *s <= i && i < *e {
                i = *e;
                continue;
            }
        }
        let Some(c) = char_at(text, i) else { break };
        if c == '#' {
            let line = t.line(i);
            let line_end = t.line_starts[line] + t.line_text(line).len();
            let body = text.get(i..line_end).unwrap_or("").trim_end().to_owned();
            let before = text.get(t.line_starts[line]..i).unwrap_or("");
            comments.push((i, body, before.trim().is_empty()));
            i = line_end;
            continue;
        }
        i += c.len_utf8();
    }
    // Blank lines outside scalars.
    let mut blank: HashSet<usize> = HashSet::new();
    for line in 0..t.line_starts.len() {
        let start = t.line_starts[line];
        let inside = covered.iter().any(|(s, e)| *s < start && start < *e);
        if !inside && t.line_text(line).trim().is_empty() {
            blank.insert(line);
        }
    }
    // Structure.
    let mut builder = Builder {
        t: &t,
        stack: Vec::new(),
        root: None,
        next_id: 0,
        anchors: &anchors,
        aliases: HashMap::new(),
        scalar_ends: &scalar_ends,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, true)
        .map_err(|e| t.err(t.byte(e.marker()), format!("not valid YAML: {}", e.info())))?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    let root = builder.root;
    let mut slots = Vec::new();
    let mut containers = BTreeMap::new();
    if let Some(r) = &root {
        walk(&t, r, 0, None, None, &mut slots, &mut containers);
    }
    slots.sort_by_key(|s| (s.at, s.depth));
    let comments = attach(&t, &comments, &slots, &containers, &blank, root.as_ref());
    Ok(Tree {
        root,
        comments,
        explicit_start,
    })
}

fn walk(
    t: &Text<'_>,
    node: &Node,
    depth: usize,
    parent: Option<usize>,
    holder: Option<usize>,
    slots: &mut Vec<Slot>,
    containers: &mut BTreeMap<usize, Container>,
) {
    match &node.kind {
        Kind::Map(entries, flow) => {
            let child_col = entries.first().map_or(0, |(k, _)| t.col(k.at));
            containers.insert(
                node.id,
                Container {
                    end: node.end,
                    child_col,
                    flow: *flow,
                    parent,
                    holder,
                },
            );
            for (k, v) in entries {
                slots.push(Slot {
                    id: k.id,
                    at: k.at,
                    depth: depth + 1,
                    container: node.id,
                    redirect: None,
                });
                if matches!(v.kind, Kind::Scalar(_) | Kind::Alias(_)) {
                    slots.push(Slot {
                        id: v.id,
                        at: v.at,
                        depth: depth + 2,
                        container: node.id,
                        redirect: Some(k.id),
                    });
                }
                walk(
                    t,
                    v,
                    depth + 2,
                    Some(node.id),
                    Some(k.id),
                    slots,
                    containers,
                );
            }
        }
        Kind::Seq(items, flow) => {
            let child_col = items
                .first()
                .map_or(0, |i| t.col(i.at).saturating_sub(if *flow { 0 } else { 2 }));
            containers.insert(
                node.id,
                Container {
                    end: node.end,
                    child_col,
                    flow: *flow,
                    parent,
                    holder,
                },
            );
            for item in items {
                slots.push(Slot {
                    id: item.id,
                    at: item.at,
                    depth: depth + 1,
                    container: node.id,
                    redirect: None,
                });
                walk(
                    t,
                    item,
                    depth + 1,
                    Some(node.id),
                    Some(item.id),
                    slots,
                    containers,
                );
            }
        }
        _ => {}
    }
}

fn push_line(lines: &mut Vec<Line>, l: Line) {
    if l == Line::Blank && lines.last() == Some(&Line::Blank) {
        return;
    }
    lines.push(l);
}

/// Attaches every comment to an entry, an item, the end of a block, the header or the
/// footer.
fn attach(
    t: &Text<'_>,
    comments: &[(usize, String, bool)],
    slots: &[Slot],
    containers: &BTreeMap<usize, Container>,
    blank: &HashSet<usize>,
    root: Option<&Node>,
) -> Comments {
    let mut out = Comments::default();
    let first_at = slots.first().map(|s| s.at).or(root.map(|r| r.at));
    let target = |s: &Slot| s.redirect.unwrap_or(s.id);
    // Header: comments above the first node, up to the last blank line before it (and any
    // yaml-language-server modeline).
    let before_first: Vec<&(usize, String, bool)> = comments
        .iter()
        .filter(|(at, _, _)| first_at.is_none_or(|f| *at < f))
        .collect();
    let mut header_count;
    if let Some(f) = first_at {
        let mut line = t.line(f);
        let mut adjacent = before_first.len();
        while adjacent > 0 && t.line(before_first[adjacent - 1].0) + 1 == line {
            adjacent -= 1;
            line -= 1;
        }
        header_count = adjacent;
    } else {
        header_count = before_first.len();
    }
    while header_count < before_first.len()
        && before_first[header_count]
            .1
            .starts_with("# yaml-language-server:")
    {
        header_count += 1;
    }
    for (i, (at, body, _)) in before_first.iter().enumerate().take(header_count) {
        let line = t.line(*at);
        if i > 0 && line > 0 && blank.contains(&(line - 1)) {
            push_line(&mut out.header, Line::Blank);
        }
        out.header.push(Line::Comment(body.clone()));
        if i + 1 == header_count && blank.contains(&(line + 1)) && first_at.is_some() {
            out.header.push(Line::Blank);
        }
    }
    let mut pending: HashMap<usize, Vec<Line>> = HashMap::new();
    for (at, body, own_line) in comments.iter().skip(header_count) {
        let line = t.line(*at);
        let prev = slots.iter().rev().find(|s| s.at < *at);
        if !own_line {
            let on_line = slots
                .iter()
                .filter(|s| s.at < *at && t.line(s.at) == line)
                .max_by_key(|s| (s.depth, s.at));
            let Some(mut slot) = on_line.or(prev) else {
                out.header.push(Line::Comment(body.clone()));
                continue;
            };
            // Out of a one-line flow collection that ended before the comment.
            while let Some(c) = containers.get(&slot.container) {
                if !(c.flow && c.end <= *at) {
                    break;
                }
                match c.holder.and_then(|h| slots.iter().find(|s| s.id == h)) {
                    Some(h) => slot = h,
                    None => break,
                }
            }
            let id = target(slot);
            match out.trailing.get(&id) {
                None => {
                    out.trailing.insert(
                        id,
                        Trailing {
                            text: body.clone(),
                            col: t.col(*at),
                        },
                    );
                }
                Some(_) => pending
                    .entry(id)
                    .or_default()
                    .push(Line::Comment(body.clone())),
            }
            continue;
        }
        let col = t.col(*at);
        let blank_before = line > 0 && blank.contains(&(line - 1));
        // A block that ended above the comment and is indented as deep as it.
        let mut tail_of = None;
        if let Some(p) = prev {
            let mut c = Some(p.container);
            while let Some(cid) = c {
                let Some(info) = containers.get(&cid) else {
                    break;
                };
                if info.end <= *at && info.child_col <= col {
                    tail_of = Some(cid);
                    break;
                }
                c = info.parent;
            }
        }
        let next = slots.iter().find(|s| s.at > *at);
        let lines = match (tail_of, next) {
            (Some(cid), _) => out.tail.entry(cid).or_default(),
            (None, Some(n)) => pending.entry(target(n)).or_default(),
            (None, None) => &mut out.footer,
        };
        if blank_before {
            push_line(lines, Line::Blank);
        }
        lines.push(Line::Comment(body.clone()));
    }
    // Blank lines right above entries and items.
    for s in slots {
        if s.redirect.is_some() {
            continue;
        }
        let line = t.line(s.at);
        let mut lines = pending.remove(&s.id).unwrap_or_default();
        if line > 0 && blank.contains(&(line - 1)) {
            push_line(&mut lines, Line::Blank);
        }
        if !lines.is_empty() {
            out.leading.insert(s.id, lines);
        }
    }
    for (id, lines) in pending {
        out.leading.entry(id).or_default().extend(lines);
    }
    out
}

enum Frame {
    Seq(Vec<Node>, usize, Option<String>, bool),
    Map(Vec<(Node, Node)>, Option<Node>, usize, Option<String>, bool),
}

struct Builder<'a, 'b> {
    t: &'a Text<'b>,
    stack: Vec<Frame>,
    root: Option<Node>,
    next_id: usize,
    anchors: &'a [String],
    aliases: HashMap<usize, String>,
    scalar_ends: &'a HashMap<usize, (usize, usize)>,
    error: Option<TreeError>,
}

impl Builder<'_, '_> {
    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    fn anchor(&mut self, id: usize) -> Option<String> {
        if id == 0 {
            return None;
        }
        let name = self.anchors.get(id - 1).cloned();
        if let Some(n) = &name {
            self.aliases.insert(id, n.clone());
        }
        name
    }

    fn closing(&self, from: usize, close: char) -> usize {
        let text = self.t.text;
        let mut i = from;
        let mut prev = ' ';
        while let Some(c) = char_at(text, i) {
            if c == '#' && prev.is_whitespace() {
                i = text[i..].find('\n').map_or(text.len(), |n| i + n);
                prev = '\n';
                continue;
            }
            if c == close {
                return i + 1;
            }
            prev = c;
            i += c.len_utf8();
        }
        text.len()
    }

    fn finish(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending, ..)) => match pending.take() {
                None => {
                    if !matches!(node.kind, Kind::Scalar(_)) {
                        self.error =
                            Some(self.t.err(node.at, "complex keys are not supported by fmt"));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_, '_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = self.t.byte(&mark);
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                if tag.is_some() {
                    self.error = Some(self.t.err(at, "YAML tags are not supported by fmt"));
                }
                let (at, end) = self.scalar_ends.get(&at).copied().unwrap_or((at, at));
                let src = self.t.text.get(at..end).unwrap_or("").to_owned();
                let id = self.id();
                let anchor = self.anchor(anchor);
                self.finish(Node {
                    id,
                    at,
                    end,
                    anchor,
                    kind: Kind::Scalar(Scalar { value, style, src }),
                });
            }
            Event::SequenceStart(anchor, _) => {
                let anchor = self.anchor(anchor);
                let flow = char_at(self.t.text, at) == Some('[');
                self.stack.push(Frame::Seq(Vec::new(), at, anchor, flow));
            }
            Event::MappingStart(anchor, _) => {
                let anchor = self.anchor(anchor);
                let flow = char_at(self.t.text, at) == Some('{');
                self.stack
                    .push(Frame::Map(Vec::new(), None, at, anchor, flow));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, start, anchor, flow)) = self.stack.pop() {
                    let last = items.last().map_or(start + 1, |n| n.end);
                    let end = if flow { self.closing(last, ']') } else { last };
                    let at = if flow {
                        start
                    } else {
                        items.first().map_or(start, |n| n.at)
                    };
                    let id = self.id();
                    self.finish(Node {
                        id,
                        at,
                        end,
                        anchor,
                        kind: Kind::Seq(items, flow),
                    });
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, start, anchor, flow)) = self.stack.pop() {
                    let last = entries.last().map_or(start + 1, |(_, v)| v.end);
                    let end = if flow { self.closing(last, '}') } else { last };
                    let at = if flow {
                        start
                    } else {
                        entries.first().map_or(start, |(k, _)| k.at)
                    };
                    let id = self.id();
                    self.finish(Node {
                        id,
                        at,
                        end,
                        anchor,
                        kind: Kind::Map(entries, flow),
                    });
                }
            }
            Event::Alias(aid) => {
                let name = self.aliases.get(&aid).cloned().unwrap_or_default();
                let id = self.id();
                let end = at + 1 + name.len();
                self.finish(Node {
                    id,
                    at,
                    end,
                    anchor: None,
                    kind: Kind::Alias(name),
                });
            }
            _ => {}
        }
    }
}
