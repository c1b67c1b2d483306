//! A YAML document as a tree of spanned nodes.
//!
//! Runbooks are deserialized into this generic tree first, not straight into typed structs:
//! serde stops at the first error, while the checker wants to report every unknown key and
//! every type mistake of a file in one pass, each with its location.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::source::Span;

/// One YAML value with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// This node and everything in it, placed at `span`.
    fn move_to(&mut self, span: Span) {
        self.span = span;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.move_to(span)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.move_to(span);
                v.move_to(span);
            }),
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_) => {}
        }
    }

    /// What the user wrote, in words, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar as text, the way a user would read it (`5` for the integer 5).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            Value::String(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

struct SpannedValue(Value);

impl<'de> Deserialize<'de> for SpannedValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(SpannedValue)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<SpannedValue>::deserialize(deserializer)?;
        let span = Span::from_location(&spanned.referenced);
        Ok(Node { value: spanned.value.0, span })
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v).map(Value::Int).map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// The common case of a runbook file, parsed straight from the YAML parser's events into the
/// node tree (issue 13: through serde and `Spanned`, parsing was 60 % of a cold `validate`).
/// `None` for anything outside that case — a syntax error, anchors and aliases, tags, merge
/// keys, a repeated key, directives, more than one document, nesting or size beyond the
/// limits, a scalar whose type needs the full resolver's say (`1.5`, `0x1F`, `.inf`): the
/// caller then parses with serde-saphyr, which gives the same tree and every diagnostic.
/// `fast_path_matches_serde_saphyr` holds the two to the same result.
pub fn parse_fast(text: &str, max_depth: usize, max_nodes: usize) -> Option<Node> {
    use granit_parser::{Event, Parser};
    // The parser options serde-saphyr derives from the checker's (its default budget, no
    // comments): what one parser refuses, the other does too.
    let mut options = granit_parser::Options::default();
    options.emit_comments = false;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut builder = FastBuilder {
        stack: Vec::new(),
        root: None,
        nodes: 0,
        max_depth,
        max_nodes,
        anchors: std::collections::HashMap::new(),
        aliases: 0,
        replayed: 0,
    };
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.ok()?;
        let at = (span.start.byte_offset()?, span.end.byte_offset()?);
        match event {
            Event::StreamStart | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_, None) => {
                documents += 1;
                if documents > 1 {
                    return None;
                }
            }
            Event::Scalar(value, style, anchor, None) => {
                let value = resolve(&value, style)?;
                builder.push(Node { value, span: Span::new(at.0, at.1) }, anchor)?;
            }
            Event::SequenceStart(_, anchor, None) => builder.open(Value::Seq(Vec::new()), at, anchor)?,
            Event::MappingStart(_, anchor, None) => builder.open(Value::Map(Vec::new()), at, anchor)?,
            // An alias repeats what its anchor holds, at the alias (a few per runbook: a
            // command used again in an undo); the alias limits are the full resolver's.
            Event::Alias(anchor) => {
                let size = builder.anchors.get(&anchor)?.1;
                builder.aliases += 1;
                builder.replayed += size;
                builder.nodes += size;
                if builder.aliases > FAST_MAX_ALIASES
                    || builder.replayed > FAST_MAX_REPLAYED
                    || builder.nodes > builder.max_nodes
                {
                    return None;
                }
                let mut node = builder.anchors.get(&anchor)?.0.clone();
                // Every node of the repeat is where the alias is, as serde-saphyr reports it.
                node.move_to(Span::new(at.0, at.1));
                builder.push(node, 0)?;
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
            // Comments carry no value; anything else (anchors, aliases, tags, directives)
            // is the full resolver's.
            Event::Comment(..) => {}
            _ => return None,
        }
    }
    if !builder.stack.is_empty() {
        return None;
    }
    builder.root
}

/// Far below serde-saphyr's alias budgets (20,000 replayed events, its anchor and ratio
/// limits): a file that uses more aliases goes the full way, which enforces them.
const FAST_MAX_ALIASES: usize = 64;
const FAST_MAX_REPLAYED: usize = 2_000;
const FAST_MAX_ANCHORS: usize = 64;

/// A collection being read.
struct Open {
    node: Node,
    /// A mapping's key waiting for its value.
    pending: Option<Node>,
    /// A mapping's keys so far, as text: a repeat is found in one lookup, not by a scan of
    /// every earlier key (quadratic in a mapping of 100,000 keys).
    keys: std::collections::HashSet<String>,
    /// Its anchor (0: none) and the node count when it opened.
    anchor: usize,
    before: usize,
}

struct FastBuilder {
    stack: Vec<Open>,
    /// Anchored nodes by id, with how many nodes each holds.
    anchors: std::collections::HashMap<usize, (Node, usize)>,
    aliases: usize,
    /// Nodes repeated by aliases so far.
    replayed: usize,
    root: Option<Node>,
    nodes: usize,
    max_depth: usize,
    max_nodes: usize,
}

impl FastBuilder {
    fn open(&mut self, value: Value, at: (usize, usize), anchor: usize) -> Option<()> {
        if self.stack.len() >= self.max_depth {
            return None;
        }
        let node = Node { value, span: Span::new(at.0, at.1) };
        self.stack.push(Open { node, pending: None, keys: Default::default(), anchor, before: self.nodes });
        Some(())
    }

    fn close(&mut self) -> Option<()> {
        let Open { node, pending, anchor, before, .. } = self.stack.pop()?;
        if pending.is_some() {
            return None;
        }
        if anchor != 0 {
            // Its own node is counted by `push` below.
            let size = self.nodes - before + 1;
            self.anchors.insert(anchor, (node.clone(), size));
            if self.anchors.len() > FAST_MAX_ANCHORS {
                return None;
            }
        }
        self.push(node, 0)
    }

    fn push(&mut self, node: Node, anchor: usize) -> Option<()> {
        self.nodes += 1;
        if self.nodes > self.max_nodes {
            return None;
        }
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), 1));
            if self.anchors.len() > FAST_MAX_ANCHORS {
                return None;
            }
        }
        let Some(Open { node: parent, pending, keys, .. }) = self.stack.last_mut() else {
            if self.root.is_some() {
                return None;
            }
            self.root = Some(node);
            return Some(());
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    // Keys are scalars here; a merge key or a repeated key is the full
                    // resolver's (it names the duplicate).
                    let text = match &node.value {
                        Value::String(s) => s.clone(),
                        Value::Null | Value::Bool(_) | Value::Int(_) => node.scalar_text().unwrap_or_default(),
                        Value::Float(_) | Value::Seq(_) | Value::Map(_) => return None,
                    };
                    if text == "<<" || !keys.insert(text) {
                        return None;
                    }
                    *pending = Some(node);
                }
            },
            _ => return None,
        }
        Some(())
    }
}

/// A scalar's value as serde-saphyr resolves it with the checker's options (YAML 1.2
/// booleans), for the spellings that are certain; `None` hands the file to it.
fn resolve(value: &str, style: granit_parser::ScalarStyle) -> Option<Value> {
    if style != granit_parser::ScalarStyle::Plain {
        // Properties (`${NAME}`) are the full resolver's too.
        return if value.contains("${") { None } else { Some(Value::String(value.to_owned())) };
    }
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    if value.contains("${") {
        return None;
    }
    let digits = value.strip_prefix('-').unwrap_or(value);
    if !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
    {
        return value.parse().ok().map(Value::Int);
    }
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let numeric_looking = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        || matches!(unsigned.to_ascii_lowercase().as_str(), "inf" | "infinity" | "nan");
    // A character no number, radix, exponent, `inf` or `nan` has makes it text for certain.
    const NUMBER_CHARS: &[u8] = b"0123456789abcdefABCDEFxXoObB_.+-iInNtTyY";
    if numeric_looking && value.bytes().all(|b| NUMBER_CHARS.contains(&b)) {
        return None;
    }
    Some(Value::String(value.to_owned()))
}
