//! The SCIM filter language (RFC 7644 §3.4.2.2): parser, AST and printer.
//!
//! ```text
//!   FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//!   valuePath = attrPath "[" valFilter "]"          (no value path inside one)
//!   attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//!   attrPath  = [URI ":"] ATTRNAME *1subAttr
//!   precedence: not ( ) > and > or; keywords and names case-insensitive
//! ```
//!
//! [`parse`] is syntax only and knows no schema, so it is what the fuzz
//! targets drive; [`parse_for`] also resolves every attribute path against a
//! resource type ([`UnknownAttribute`] otherwise) and rejects comparisons the
//! RFC does not define, which is what a filter → SQL translation starts from.
//!
//! Input is bounded before any parsing work: at most [`Limits::max_length`]
//! bytes, and at most [`Limits::max_depth`] nested `(` or `[`, found by a flat
//! scan; the parser counts again, so its recursion depth stays bounded by the
//! limit whatever the input. `and`/`or` chains are n-ary nodes, not nested
//! ones, so the AST is never deeper than the nesting limit allows.
//!
//! [`Filter`]'s `Display` prints valid filter syntax that parses back to the
//! same AST.

use std::fmt;

use serde_json::{Number, Value};

use crate::ScimType;
use crate::schema::{Attribute, AttributeType, Mutability, ResourceType, UnknownAttribute};

/// Longest filter accepted, in bytes.
pub const MAX_LENGTH: usize = 4096;
/// Deepest nesting of `(…)`, `not (…)` and `attr[…]` accepted.
pub const MAX_DEPTH: usize = 16;

/// Bounds checked before a filter or PATCH path is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_length: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_length: MAX_LENGTH, max_depth: MAX_DEPTH }
    }
}

/// An attribute path as written: optional schema URN, attribute name,
/// optional sub-attribute. Spelling is kept for messages and printing;
/// matching against the schema ignores case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path to a core attribute with no sub-attribute.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath { urn: None, name: name.into(), sub_attr: None }
    }

    /// The path in lower case, for case-insensitive matching (RFC 7643 §2.1).
    pub fn normalized(&self) -> String {
        self.to_string().to_lowercase()
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A comparison operator (RFC 7644 §3.4.2.2, Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator for a keyword in any case.
    pub fn from_keyword(word: &str) -> Option<CompareOp> {
        CompareOp::ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    pub fn is_ordering(self) -> bool {
        matches!(self, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le)
    }

    pub fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON number as the client wrote it: printing gives back the same
/// filter, and a SQL translation can bind the text exactly (as `numeric`).
/// Equality is by text.
#[derive(Debug, Clone)]
pub struct JsonNumber {
    text: String,
    value: Number,
}

impl JsonNumber {
    /// `text` if it is a JSON number (RFC 8259 §6) that serde_json can hold.
    pub fn new(text: &str) -> Option<JsonNumber> {
        let bytes = text.as_bytes();
        let mut i = usize::from(bytes.first() == Some(&b'-'));
        let digits = |i: &mut usize| {
            let from = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let int_start = i;
        if !digits(&mut i) || (bytes[int_start] == b'0' && i - int_start > 1) {
            return None;
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        if i != bytes.len() {
            return None;
        }
        let value = serde_json::from_str::<Number>(text).ok()?;
        Some(JsonNumber { text: text.to_owned(), value })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The number as serde_json holds it (an `f64` beyond 64-bit integers).
    pub fn value(&self) -> &Number {
        &self.value
    }
}

impl From<i64> for JsonNumber {
    fn from(n: i64) -> Self {
        JsonNumber { text: n.to_string(), value: n.into() }
    }
}

impl PartialEq for JsonNumber {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonNumber {}

impl std::hash::Hash for JsonNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A literal on the right of a comparison: a JSON scalar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(JsonNumber),
    String(String),
}

impl CompValue {
    pub fn to_json(&self) -> Value {
        match self {
            CompValue::Null => Value::Null,
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Number(n) => Value::Number(n.value().clone()),
            CompValue::String(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => write!(f, "{n}"),
            CompValue::String(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
        }
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `attr pr`
    Present(AttrPath),
    /// `attr op value`
    Compare { path: AttrPath, op: CompareOp, value: CompValue },
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`,
    /// whose paths name sub-attributes of `attr`. `path` has no sub-attribute.
    ValuePath { path: AttrPath, filter: Box<Filter> },
    /// `not (filter)`
    Not(Box<Filter>),
    /// `a and b and …`, two or more operands.
    And(Vec<Filter>),
    /// `a or b or …`, two or more operands.
    Or(Vec<Filter>),
}

impl Filter {
    fn write_operand(&self, f: &mut fmt::Formatter<'_>, parenthesize: bool) -> fmt::Result {
        if parenthesize { write!(f, "({self})") } else { write!(f, "{self}") }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::And(operands) => {
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    // A nested and/or was grouped in the source; keep the group.
                    operand.write_operand(f, matches!(operand, Filter::And(_) | Filter::Or(_)))?;
                }
                Ok(())
            }
            Filter::Or(operands) => {
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    operand.write_operand(f, matches!(operand, Filter::Or(_)))?;
                }
                Ok(())
            }
        }
    }
}

/// Why a filter was refused; always reported as `scimType: invalidFilter`.
/// Offsets are 0-based byte offsets into the filter text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter is {length} bytes long; at most {max} are accepted")]
    TooLong { length: usize, max: usize },
    #[error("filter nests `(`, `not (` or `[` more than {max} levels deep (at offset {at})")]
    TooDeep { max: usize, at: usize },
    #[error("unterminated string starting at offset {at}")]
    UnterminatedString { at: usize },
    #[error("invalid string at offset {at}: {reason}")]
    InvalidString { at: usize, reason: String },
    #[error("invalid number {text:?} at offset {at}")]
    InvalidNumber { at: usize, text: String },
    #[error("invalid attribute path {text:?} at offset {at}: {reason}")]
    InvalidAttributePath { at: usize, text: String, reason: &'static str },
    #[error(
        "unknown operator {found:?} after {path:?} at offset {at}; expected eq, ne, co, sw, ew, gt, ge, lt, le or pr"
    )]
    UnknownOperator { at: usize, path: String, found: String },
    #[error("expected {expected} at offset {at}, found {found}")]
    Unexpected { at: usize, expected: &'static str, found: String },
    #[error(transparent)]
    UnknownAttribute(#[from] UnknownAttribute),
    #[error("{op} cannot be applied to {path:?}: {reason}")]
    UnsupportedComparison { path: String, op: &'static str, reason: &'static str },
}

impl FilterError {
    pub fn scim_type(&self) -> ScimType {
        ScimType::InvalidFilter
    }
}

/// Parses a filter with the default [`Limits`] (syntax only, no schema).
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    parse_with(input, Limits::default())
}

/// Parses a filter within `limits` (syntax only, no schema).
pub fn parse_with(input: &str, limits: Limits) -> Result<Filter, FilterError> {
    check_limits(input, limits)?;
    let mut parser = Parser::new(input, limits.max_depth);
    let filter = parser.filter(Within::Top)?;
    parser.skip_ws();
    if !parser.at_end() {
        return Err(parser.after_expression(Within::Top));
    }
    Ok(filter)
}

/// Parses a filter for `resource_type` and checks it: every attribute path
/// names an attribute ([`FilterError::UnknownAttribute`] otherwise) and every
/// comparison is defined for that attribute's type.
pub fn parse_for(input: &str, resource_type: &ResourceType) -> Result<Filter, FilterError> {
    let filter = parse(input)?;
    validate(&filter, resource_type)?;
    Ok(filter)
}

/// Checks a parsed filter against a resource type (see [`parse_for`]).
pub fn validate(filter: &Filter, resource_type: &ResourceType) -> Result<(), FilterError> {
    validate_in(filter, resource_type, None)
}

/// Parses one attribute path (`name`, `name.givenName`, `urn:…:User:manager`)
/// and nothing else.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, FilterError> {
    check_limits(input, Limits::default())?;
    let mut parser = Parser::new(input, MAX_DEPTH);
    let path = parser.attr_path()?;
    if !parser.at_end() {
        return Err(parser.unexpected("the end of the attribute path"));
    }
    Ok(path)
}

/// Checks the filter of a value path (`attr[…]`) whose paths name
/// sub-attributes of `parent`.
pub(crate) fn validate_value_filter(
    filter: &Filter,
    resource_type: &ResourceType,
    parent: &'static Attribute,
) -> Result<(), FilterError> {
    validate_in(filter, resource_type, Some(parent))
}

fn validate_in(
    filter: &Filter,
    resource_type: &ResourceType,
    parent: Option<&'static Attribute>,
) -> Result<(), FilterError> {
    let resolve = |path: &AttrPath| -> Result<&'static Attribute, FilterError> {
        Ok(match parent {
            Some(parent) => resource_type.resolve_in(parent, path)?,
            None => resource_type.resolve(path)?.leaf(),
        })
    };
    match filter {
        Filter::Present(path) => {
            let leaf = resolve(path)?;
            check_comparison(path, leaf, "pr", None)
        }
        Filter::Compare { path, op, value } => {
            let leaf = resolve(path)?;
            check_comparison(path, leaf, op.as_str(), Some((*op, value)))
        }
        Filter::ValuePath { path, filter } => {
            let attribute = match parent {
                // The parser never nests value paths; a hand-built AST might.
                Some(parent) => {
                    return Err(UnknownAttribute {
                        path: format!("{}[{path}]", parent.name),
                        resource_type: resource_type.id,
                    }
                    .into());
                }
                None => resource_type.resolve(path)?,
            };
            if attribute.sub_attribute.is_some() || !attribute.attribute.is_complex() {
                return Err(FilterError::UnsupportedComparison {
                    path: path.to_string(),
                    op: "[…]",
                    reason: "a value filter applies to a complex attribute",
                });
            }
            validate_in(filter, resource_type, Some(attribute.attribute))
        }
        Filter::Not(inner) => validate_in(inner, resource_type, parent),
        Filter::And(operands) | Filter::Or(operands) => {
            operands.iter().try_for_each(|operand| validate_in(operand, resource_type, parent))
        }
    }
}

/// Comparisons the RFC leaves undefined are refused (RFC 7644 §3.4.2.2):
/// ordering on boolean or binary, substring on non-strings, anything but `pr`
/// on a complex attribute without a `value`; and nothing may probe a
/// write-only attribute such as `password` (RFC 7643 §7, `returned: never`).
fn check_comparison(
    path: &AttrPath,
    leaf: &Attribute,
    op_name: &'static str,
    comparison: Option<(CompareOp, &CompValue)>,
) -> Result<(), FilterError> {
    let refuse =
        |reason| Err(FilterError::UnsupportedComparison { path: path.to_string(), op: op_name, reason });
    if leaf.mutability == Mutability::WriteOnly {
        return refuse("write-only attributes cannot be filtered on");
    }
    let Some((op, value)) = comparison else { return Ok(()) };
    let undefined = match leaf.kind {
        AttributeType::Complex => Some("a complex attribute can only be tested with pr"),
        AttributeType::Boolean | AttributeType::Binary if op.is_ordering() => {
            Some("ordering is not defined for boolean and binary attributes")
        }
        AttributeType::Boolean if op.is_substring() => Some("co, sw and ew are not defined for booleans"),
        _ if op.is_substring() && !matches!(value, CompValue::String(_)) => {
            Some("co, sw and ew compare with a string")
        }
        _ if op.is_ordering() && matches!(value, CompValue::Null | CompValue::Bool(_)) => {
            Some("gt, ge, lt and le compare with a string or a number")
        }
        _ => None,
    };
    match undefined {
        Some(reason) => refuse(reason),
        None => Ok(()),
    }
}

/// Length first, then nesting by a flat scan that skips string literals:
/// nothing recursive runs on input that fails either.
pub(crate) fn check_limits(input: &str, limits: Limits) -> Result<(), FilterError> {
    if input.len() > limits.max_length {
        return Err(FilterError::TooLong { length: input.len(), max: limits.max_length });
    }
    let bytes = input.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_string = false,
            (false, b'"') => in_string = true,
            (false, b'(' | b'[') => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(FilterError::TooDeep { max: limits.max_depth, at: i });
                }
            }
            (false, b')' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Where an expression sits, for what may follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Within {
    Top,
    Group,
    ValuePath,
}

/// Recursive descent over the text with a byte cursor; recursion happens only
/// on `(` and `[`, and each of those goes through [`Parser::enter`].
pub(crate) struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
    max_depth: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$')
}

fn is_path_byte(b: u8) -> bool {
    is_name_byte(b) || matches!(b, b':' | b'.')
}

/// `ATTRNAME = ALPHA *(nameChar)` (RFC 7644 §3.4.2.2), plus `$ref`.
pub(crate) fn is_attr_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        Some(b'$') => name.eq_ignore_ascii_case("$ref"),
        _ => false,
    }
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str, max_depth: usize) -> Self {
        Parser { src, pos: 0, depth: 0, max_depth }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn bump(&mut self) {
        self.pos += 1;
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(FilterError::TooDeep { max: self.max_depth, at: self.pos });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// A short description of what is at the cursor, for error messages.
    fn found(&self) -> String {
        let rest = &self.src[self.pos..];
        let Some(first) = rest.chars().next() else {
            return "the end of the input".to_owned();
        };
        if first == '"' {
            return "a string".to_owned();
        }
        let token: String = if first.is_ascii() && is_path_byte(first as u8) {
            rest.chars().take_while(|c| c.is_ascii() && is_path_byte(*c as u8)).take(40).collect()
        } else {
            first.to_string()
        };
        format!("`{token}`")
    }

    pub(crate) fn unexpected(&self, expected: &'static str) -> FilterError {
        FilterError::Unexpected { at: self.pos, expected, found: self.found() }
    }

    /// The error for what follows a complete expression but may not.
    pub(crate) fn after_expression(&self, within: Within) -> FilterError {
        let expected = match within {
            Within::Top => "`and`, `or` or the end of the filter",
            Within::Group => "`and`, `or` or `)`",
            Within::ValuePath => "`and`, `or` or `]`",
        };
        self.unexpected(expected)
    }

    /// A case-insensitive keyword at the cursor, not followed by a name byte.
    fn keyword(&self, word: &str) -> bool {
        let end = self.pos + word.len();
        self.src.get(self.pos..end).is_some_and(|s| s.eq_ignore_ascii_case(word))
            && !self.src.as_bytes().get(end).is_some_and(|b| is_path_byte(*b))
    }

    /// `not` followed by `(`: the negation, not an attribute called `not`.
    fn at_not(&self) -> bool {
        if !self.keyword("not") {
            return false;
        }
        let rest = &self.src.as_bytes()[self.pos + 3..];
        rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'(')
    }

    /// `a or b or …`
    pub(crate) fn filter(&mut self, within: Within) -> Result<Filter, FilterError> {
        let mut operands = vec![self.conjunction(within)?];
        loop {
            self.skip_ws();
            if !self.keyword("or") {
                break;
            }
            self.pos += 2;
            operands.push(self.conjunction(within)?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Filter::Or(operands) })
    }

    /// `a and b and …`
    fn conjunction(&mut self, within: Within) -> Result<Filter, FilterError> {
        let mut operands = vec![self.unary(within)?];
        loop {
            self.skip_ws();
            if !self.keyword("and") {
                break;
            }
            self.pos += 3;
            operands.push(self.unary(within)?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Filter::And(operands) })
    }

    /// `( filter )`, `not ( filter )`, a value path or an attribute expression.
    fn unary(&mut self, within: Within) -> Result<Filter, FilterError> {
        self.skip_ws();
        let negated = self.at_not();
        if negated {
            self.pos += 3;
            self.skip_ws();
        }
        if self.peek() == Some(b'(') {
            self.enter()?;
            self.bump();
            let inner_within = if within == Within::ValuePath { Within::ValuePath } else { Within::Group };
            let inner = self.filter(inner_within)?;
            self.skip_ws();
            if self.peek() != Some(b')') {
                return Err(self.after_expression(Within::Group));
            }
            self.bump();
            self.leave();
            return Ok(if negated { Filter::Not(Box::new(inner)) } else { inner });
        }
        self.attr_expression(within)
    }

    fn attr_expression(&mut self, within: Within) -> Result<Filter, FilterError> {
        let start = self.pos;
        let path = self.attr_path()?;
        if self.peek() == Some(b'[') {
            if within == Within::ValuePath {
                return Err(self.unexpected("an operator; value filters cannot be nested"));
            }
            let filter = self.value_filter(start, &path)?;
            if self.peek() == Some(b'.') {
                return Err(self.unexpected(
                    "`and`, `or` or the end after `]` (a sub-attribute after a value filter is only valid in a PATCH path)",
                ));
            }
            return Ok(Filter::ValuePath { path, filter: Box::new(filter) });
        }
        self.skip_ws();
        let op_at = self.pos;
        let word_end = self.src[op_at..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '(' || c == ')' || c == '[' || c == ']')
            .map_or(self.src.len(), |i| op_at + i);
        let word = &self.src[op_at..word_end];
        if word.is_empty() {
            return Err(self.unexpected("an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr)"));
        }
        if word.eq_ignore_ascii_case("pr") {
            self.pos = word_end;
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::from_keyword(word) else {
            let found: String = word.chars().take(40).collect();
            return Err(FilterError::UnknownOperator { at: op_at, path: path.to_string(), found });
        };
        self.pos = word_end;
        self.skip_ws();
        let value = self.comp_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// `[ valFilter ]` after `path`, with the cursor on `[`.
    pub(crate) fn value_filter(&mut self, path_at: usize, path: &AttrPath) -> Result<Filter, FilterError> {
        if path.sub_attr.is_some() {
            return Err(FilterError::InvalidAttributePath {
                at: path_at,
                text: path.to_string(),
                reason: "a value filter follows an attribute, not a sub-attribute",
            });
        }
        self.enter()?;
        self.bump();
        let filter = self.filter(Within::ValuePath)?;
        self.skip_ws();
        if self.peek() != Some(b']') {
            return Err(self.after_expression(Within::ValuePath));
        }
        self.bump();
        self.leave();
        Ok(filter)
    }

    /// `"." ATTRNAME` after the `]` of a value path in a PATCH path, if present.
    pub(crate) fn sub_attr_after_value_path(&mut self) -> Result<Option<String>, FilterError> {
        if self.peek() != Some(b'.') {
            return Ok(None);
        }
        self.bump();
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.bump();
        }
        let name = &self.src[start..self.pos];
        if !is_attr_name(name) {
            return Err(FilterError::InvalidAttributePath {
                at: start,
                text: name.to_owned(),
                reason: "a sub-attribute name follows the `.` after `]`",
            });
        }
        Ok(Some(name.to_owned()))
    }

    /// `[URI ":"] ATTRNAME *1subAttr`: a run of name characters, split at the
    /// last `:` (the URN itself contains `:` and `.`) and then at `.`.
    pub(crate) fn attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'$' => {}
            _ => return Err(self.unexpected("an attribute name")),
        }
        while self.peek().is_some_and(is_path_byte) {
            self.bump();
        }
        let text = &self.src[start..self.pos];
        let invalid = |reason| FilterError::InvalidAttributePath { at: start, text: text.to_owned(), reason };
        let (urn, rest) = match text.rfind(':') {
            Some(colon) => {
                let urn = &text[..colon];
                let prefixed = urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
                if !prefixed || urn.contains('$') || urn.contains("::") || urn.ends_with(':') {
                    return Err(invalid("a prefix before the attribute name must be a schema URN (urn:…)"));
                }
                (Some(urn.to_owned()), &text[colon + 1..])
            }
            None => (None, text),
        };
        let (name, sub_attr) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        if !is_attr_name(name) {
            return Err(invalid(
                "an attribute name starts with a letter and has letters, digits, `_` or `-`",
            ));
        }
        if let Some(sub) = sub_attr
            && !is_attr_name(sub)
        {
            return Err(invalid("a sub-attribute is one name after a single `.`"));
        }
        Ok(AttrPath { urn, name: name.to_owned(), sub_attr: sub_attr.map(str::to_owned) })
    }

    /// `compValue = false / null / true / number / string` (JSON literals).
    fn comp_value(&mut self) -> Result<CompValue, FilterError> {
        const EXPECTED: &str = "a value (a string in double quotes, a number, true, false or null)";
        match self.peek() {
            Some(b'"') => self.string().map(CompValue::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(CompValue::Number),
            Some(b) if b.is_ascii_alphabetic() => {
                for (word, value) in [
                    ("true", CompValue::Bool(true)),
                    ("false", CompValue::Bool(false)),
                    ("null", CompValue::Null),
                ] {
                    if self.keyword(word) {
                        self.pos += word.len();
                        return Ok(value);
                    }
                }
                Err(self.unexpected(EXPECTED))
            }
            _ => Err(self.unexpected(EXPECTED)),
        }
    }

    /// A JSON string; its escapes are decoded by serde_json.
    fn string(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = start + 1;
        loop {
            match bytes.get(i) {
                None => return Err(FilterError::UnterminatedString { at: start }),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        serde_json::from_str::<String>(&self.src[start..=i])
            .map_err(|e| FilterError::InvalidString { at: start, reason: json_error_reason(&e) })
    }

    /// A JSON number: the run of number characters, checked by [`JsonNumber::new`].
    fn number(&mut self) -> Result<JsonNumber, FilterError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.bump();
        }
        let text = &self.src[start..self.pos];
        JsonNumber::new(text).ok_or_else(|| FilterError::InvalidNumber { at: start, text: text.to_owned() })
    }
}

/// serde_json's message without its "at line 1 column N" suffix.
fn json_error_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP, USER};

    fn path(name: &str) -> AttrPath {
        AttrPath::new(name)
    }

    fn sub(name: &str, sub: &str) -> AttrPath {
        AttrPath { urn: None, name: name.into(), sub_attr: Some(sub.into()) }
    }

    fn cmp(path: AttrPath, op: CompareOp, value: CompValue) -> Filter {
        Filter::Compare { path, op, value }
    }

    fn s(text: &str) -> CompValue {
        CompValue::String(text.into())
    }

    fn ok(input: &str) -> Filter {
        match parse(input) {
            Ok(filter) => filter,
            Err(e) => panic!("{input:?} should parse: {e}"),
        }
    }

    fn err(input: &str) -> FilterError {
        match parse(input) {
            Ok(filter) => panic!("{input:?} should fail, parsed as {filter:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn okta_user_lookup_by_user_name() {
        assert_eq!(
            ok(r#"userName eq "ada@example.test""#),
            cmp(path("userName"), CompareOp::Eq, s("ada@example.test"))
        );
    }

    #[test]
    fn entra_group_lookup_by_display_name_and_external_id() {
        assert_eq!(ok(r#"displayName eq "Finance""#), cmp(path("displayName"), CompareOp::Eq, s("Finance")));
        assert_eq!(
            ok(r#"externalId eq "5b3c0e7e-0000-4000-8000-00000000beef""#),
            cmp(path("externalId"), CompareOp::Eq, s("5b3c0e7e-0000-4000-8000-00000000beef"))
        );
    }

    #[test]
    fn every_operator_in_any_case() {
        for op in CompareOp::ALL {
            for spelling in [op.as_str().to_owned(), op.as_str().to_uppercase(), {
                let mut mixed = op.as_str().to_owned();
                mixed[..1].make_ascii_uppercase();
                mixed
            }] {
                let filter = ok(&format!(r#"title {spelling} "x""#));
                assert_eq!(filter, cmp(path("title"), op, s("x")), "operator {spelling}");
            }
        }
        assert_eq!(ok("title pr"), Filter::Present(path("title")));
        assert_eq!(ok("title PR"), Filter::Present(path("title")));
    }

    #[test]
    fn values_strings_numbers_booleans_null() {
        assert_eq!(ok("active eq true"), cmp(path("active"), CompareOp::Eq, CompValue::Bool(true)));
        assert_eq!(ok("active eq False"), cmp(path("active"), CompareOp::Eq, CompValue::Bool(false)));
        assert_eq!(ok("title eq null"), cmp(path("title"), CompareOp::Eq, CompValue::Null));
        assert_eq!(ok("count gt 42"), cmp(path("count"), CompareOp::Gt, CompValue::Number(42.into())));
        let Filter::Compare { value: CompValue::Number(n), .. } = ok("x le -1.5E+3") else { panic!() };
        assert_eq!((n.as_str(), n.value().as_f64()), ("-1.5E+3", Some(-1500.0)));
        // Kept as written, so printing gives the same filter back.
        assert_eq!(ok("x eq 0.30000000000000004e-7").to_string(), "x eq 0.30000000000000004e-7");
    }

    #[test]
    fn strings_decode_json_escapes() {
        let filter = ok(r#"displayName eq "Say \"hi\" \\ \u00e9\n\ud83d\ude00""#);
        assert_eq!(filter, cmp(path("displayName"), CompareOp::Eq, s("Say \"hi\" \\ é\n😀")));
        assert_eq!(ok(r#"title eq "a]b)c(d[""#), cmp(path("title"), CompareOp::Eq, s("a]b)c(d[")));
    }

    #[test]
    fn attribute_paths_with_sub_attributes_and_urns() {
        assert_eq!(
            ok(r#"name.familyName co "Love""#),
            cmp(sub("name", "familyName"), CompareOp::Co, s("Love"))
        );
        let employee = format!(r#"{ENTERPRISE_USER_SCHEMA}:employeeNumber eq "701984""#);
        assert_eq!(
            ok(&employee),
            cmp(
                AttrPath {
                    urn: Some(ENTERPRISE_USER_SCHEMA.into()),
                    name: "employeeNumber".into(),
                    sub_attr: None
                },
                CompareOp::Eq,
                s("701984")
            )
        );
        let manager = ok(&format!(r#"{ENTERPRISE_USER_SCHEMA}:manager.value eq "m1""#));
        let Filter::Compare { path: p, .. } = manager else { panic!() };
        assert_eq!(p.urn.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!((p.name.as_str(), p.sub_attr.as_deref()), ("manager", Some("value")));
        assert_eq!(ok("members.$ref pr"), Filter::Present(sub("members", "$ref")));
    }

    #[test]
    fn attribute_names_keep_their_spelling_and_normalize_to_lowercase() {
        let Filter::Present(p) = ok("Name.GivenName pr") else { panic!() };
        assert_eq!(p.to_string(), "Name.GivenName");
        assert_eq!(p.normalized(), "name.givenname");
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let a = || Filter::Present(path("a"));
        let b = || Filter::Present(path("b"));
        let c = || Filter::Present(path("c"));
        assert_eq!(ok("a pr or b pr and c pr"), Filter::Or(vec![a(), Filter::And(vec![b(), c()])]));
        assert_eq!(ok("a pr and b pr or c pr"), Filter::Or(vec![Filter::And(vec![a(), b()]), c()]));
        assert_eq!(ok("a pr AND b pr Or c pr"), Filter::Or(vec![Filter::And(vec![a(), b()]), c()]));
    }

    #[test]
    fn parentheses_group_and_not_negates_a_group() {
        let a = || Filter::Present(path("a"));
        let b = || Filter::Present(path("b"));
        let c = || Filter::Present(path("c"));
        assert_eq!(ok("(a pr or b pr) and c pr"), Filter::And(vec![Filter::Or(vec![a(), b()]), c()]));
        assert_eq!(ok("not (a pr) and b pr"), Filter::And(vec![Filter::Not(Box::new(a())), b()]));
        assert_eq!(ok("NOT(a pr or b pr)"), Filter::Not(Box::new(Filter::Or(vec![a(), b()]))));
        assert_eq!(ok("((a pr))"), a());
        assert_eq!(ok("  a pr  "), a());
    }

    #[test]
    fn not_without_a_group_is_an_attribute_name() {
        assert_eq!(ok("not pr"), Filter::Present(path("not")));
        assert_eq!(
            ok("and pr and or pr"),
            Filter::And(vec![Filter::Present(path("and")), Filter::Present(path("or"))])
        );
    }

    #[test]
    fn value_paths() {
        let filter = ok(r#"emails[type eq "work" and value co "@acme.com"]"#);
        assert_eq!(
            filter,
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(Filter::And(vec![
                    cmp(path("type"), CompareOp::Eq, s("work")),
                    cmp(path("value"), CompareOp::Co, s("@acme.com")),
                ])),
            }
        );
        let combined = ok(r#"userType eq "Employee" and emails[type eq "work" and not (value ew ".test")]"#);
        let Filter::And(operands) = combined else { panic!() };
        assert!(matches!(&operands[1], Filter::ValuePath { .. }));
    }

    #[test]
    fn rfc_examples_parse() {
        for example in [
            r#"userName Eq "john""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            "title pr",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and (emails.type eq "work")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ] {
            let filter = ok(example);
            assert_eq!(ok(&filter.to_string()), filter, "{example}");
        }
    }

    #[test]
    fn display_prints_parseable_syntax() {
        let filter = ok(r#"a eq "x\"y" OR (b pr AND (c pr and d pr)) or not (e[f pr])"#);
        assert_eq!(filter.to_string(), r#"a eq "x\"y" or b pr and (c pr and d pr) or not (e[f pr])"#);
        assert_eq!(ok("(a pr or b pr) or c pr").to_string(), "(a pr or b pr) or c pr");
    }

    #[test]
    fn unterminated_string() {
        assert_eq!(err(r#"userName eq "ada"#), FilterError::UnterminatedString { at: 12 });
        assert_eq!(err(r#"userName eq "ada\""#), FilterError::UnterminatedString { at: 12 });
    }

    #[test]
    fn invalid_escape_and_control_characters() {
        assert!(matches!(err(r#"title eq "\q""#), FilterError::InvalidString { at: 9, .. }));
        assert!(matches!(err("title eq \"a\u{1}b\""), FilterError::InvalidString { .. }));
        assert!(matches!(err(r#"title eq "\ud800""#), FilterError::InvalidString { .. }));
    }

    #[test]
    fn unknown_operator_names_what_was_found() {
        let e = err(r#"userName equals "x""#);
        assert_eq!(
            e,
            FilterError::UnknownOperator { at: 9, path: "userName".into(), found: "equals".into() }
        );
        assert_eq!(
            e.to_string(),
            "unknown operator \"equals\" after \"userName\" at offset 9; expected eq, ne, co, sw, ew, gt, ge, lt, le or pr"
        );
        assert!(
            matches!(err(r#"userName = "x""#), FilterError::UnknownOperator { found, .. } if found == "=")
        );
    }

    #[test]
    fn trailing_garbage() {
        let e = err(r#"userName eq "x" extra"#);
        assert_eq!(
            e,
            FilterError::Unexpected {
                at: 16,
                expected: "`and`, `or` or the end of the filter",
                found: "`extra`".into()
            }
        );
        assert!(matches!(err("a pr)"), FilterError::Unexpected { at: 4, .. }));
        assert!(matches!(err("a pr and"), FilterError::Unexpected { expected: "an attribute name", .. }));
        assert!(matches!(err("a pr andb pr"), FilterError::Unexpected { found, .. } if found == "`andb`"));
    }

    #[test]
    fn missing_pieces() {
        assert!(matches!(err(""), FilterError::Unexpected { at: 0, expected: "an attribute name", .. }));
        assert!(matches!(err("userName"), FilterError::Unexpected { at: 8, .. }));
        assert!(matches!(err("userName eq"), FilterError::Unexpected { at: 11, .. }));
        assert!(
            matches!(err("userName eq 'single'"), FilterError::Unexpected { found, .. } if found == "`'`")
        );
        assert!(matches!(err("(a pr"), FilterError::Unexpected { expected: "`and`, `or` or `)`", .. }));
        assert!(matches!(
            err("emails[type pr"),
            FilterError::Unexpected { expected: "`and`, `or` or `]`", .. }
        ));
        assert!(matches!(err("not a pr"), FilterError::UnknownOperator { .. }));
        assert!(matches!(err("x eq 01"), FilterError::InvalidNumber { .. }));
        assert!(matches!(err("x eq -"), FilterError::InvalidNumber { .. }));
        assert!(matches!(err("x eq 1e999"), FilterError::InvalidNumber { .. }));
        assert!(matches!(err("x eq 1."), FilterError::InvalidNumber { .. }));
        assert!(matches!(err("x eq 1e"), FilterError::InvalidNumber { .. }));
        assert!(matches!(err("x eq 1-2"), FilterError::InvalidNumber { .. }));
        assert!(matches!(err("x eq --1"), FilterError::InvalidNumber { .. }));
    }

    #[test]
    fn invalid_attribute_paths() {
        assert!(matches!(err("name..x pr"), FilterError::InvalidAttributePath { .. }));
        assert!(matches!(err("name.a.b pr"), FilterError::InvalidAttributePath { .. }));
        assert!(matches!(err("foo:bar pr"), FilterError::InvalidAttributePath { .. }));
        assert!(matches!(err("urn:x: pr"), FilterError::InvalidAttributePath { .. }));
        assert!(matches!(err("$foo pr"), FilterError::InvalidAttributePath { .. }));
        assert!(matches!(err("1abc pr"), FilterError::Unexpected { expected: "an attribute name", .. }));
        assert!(matches!(err(r#"name.givenName[x pr]"#), FilterError::InvalidAttributePath { .. }));
    }

    #[test]
    fn value_paths_do_not_nest_or_take_a_sub_attribute_in_a_filter() {
        assert!(matches!(err("emails[type[value pr]]"), FilterError::Unexpected { .. }));
        let e = err(r#"emails[type eq "work"].value eq "x""#);
        assert!(e.to_string().contains("only valid in a PATCH path"), "{e}");
    }

    #[test]
    fn too_long_is_refused_before_parsing() {
        let long = format!(r#"userName eq "{}""#, "a".repeat(MAX_LENGTH));
        assert_eq!(err(&long), FilterError::TooLong { length: long.len(), max: MAX_LENGTH });
    }

    #[test]
    fn too_deep_is_refused_at_the_seventeenth_level() {
        let nested = |n: usize| format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(err(&nested(MAX_DEPTH + 1)), FilterError::TooDeep { max: MAX_DEPTH, at: MAX_DEPTH });
        let nots = format!("{}a pr{}", "not (".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(matches!(err(&nots), FilterError::TooDeep { .. }));
        // Brackets inside strings are not nesting.
        let quoted = format!(r#"title eq "{}""#, "(".repeat(100));
        assert!(parse(&quoted).is_ok());
    }

    #[test]
    fn ten_thousand_nested_parentheses_fail_fast_on_a_small_stack() {
        let nested = format!("{}a pr{}", "(".repeat(10_000), ")".repeat(10_000));
        let unbalanced = "(".repeat(10_000);
        let nots = "not (".repeat(10_000);
        // 64 KiB of stack: any recursion per level would overflow it.
        let result = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let unlimited = Limits { max_length: usize::MAX, max_depth: MAX_DEPTH };
                let started = std::time::Instant::now();
                let results = [
                    parse_with(&nested, unlimited),
                    parse_with(&unbalanced, unlimited),
                    parse_with(&nots, unlimited),
                    parse(&nested),
                ];
                (results, started.elapsed())
            })
            .unwrap()
            .join()
            .unwrap();
        let (results, elapsed) = result;
        assert!(matches!(results[0], Err(FilterError::TooDeep { at: 16, .. })));
        assert!(matches!(results[1], Err(FilterError::TooDeep { .. })));
        assert!(matches!(results[2], Err(FilterError::TooDeep { .. })));
        assert!(matches!(results[3], Err(FilterError::TooLong { .. })));
        assert!(elapsed < std::time::Duration::from_millis(100), "took {elapsed:?}");
    }

    #[test]
    fn errors_map_to_invalid_filter() {
        assert_eq!(err("x").scim_type(), ScimType::InvalidFilter);
        assert_eq!(parse_for("nope pr", &USER).unwrap_err().scim_type(), ScimType::InvalidFilter);
    }

    #[test]
    fn parse_for_rejects_unknown_attributes() {
        let e = parse_for(r#"userNam eq "x""#, &USER).unwrap_err();
        assert_eq!(e.to_string(), "unknown attribute \"userNam\" for resource type User");
        assert!(parse_for(r#"emails[tpe eq "work"]"#, &USER).is_err());
        assert!(parse_for(r#"members[value eq "x"]"#, &USER).is_err());
        assert!(parse_for(r#"members[value eq "x"]"#, &GROUP).is_ok());
        assert!(parse_for(r#"employeeNumber eq "1""#, &USER).is_err());
        assert!(parse_for(&format!(r#"{ENTERPRISE_USER_SCHEMA}:employeeNumber eq "1""#), &USER).is_ok());
        assert!(parse_for(r#"USERNAME EQ "x" and NAME.GIVENNAME pr"#, &USER).is_ok());
    }

    #[test]
    fn parse_for_rejects_comparisons_the_rfc_leaves_undefined() {
        for bad in [
            "active gt true",
            r#"active co "t""#,
            r#"name eq "Ada""#,
            r#"password eq "hunter2""#,
            "password pr",
            "title gt null",
            "title co 1",
            r#"emails.value[type eq "work"]"#,
            r#"userName[value eq "x"]"#,
        ] {
            let e = match parse_for(bad, &USER) {
                Ok(_) => panic!("{bad} should be refused"),
                Err(e) => e,
            };
            assert!(
                matches!(
                    e,
                    FilterError::UnsupportedComparison { .. } | FilterError::InvalidAttributePath { .. }
                ),
                "{bad}: {e:?}"
            );
        }
        for good in [
            "active eq true",
            r#"emails co "@acme.com""#,
            "name pr",
            r#"meta.lastModified gt "2024-01-01T00:00:00Z""#,
        ] {
            assert!(parse_for(good, &USER).is_ok(), "{good}");
        }
    }

    mod properties {
        use super::*;
        use crate::filter::strategies::filter;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn printed_filters_parse_back_to_the_same_ast(filter in filter()) {
                let printed = filter.to_string();
                let limits = Limits { max_length: usize::MAX, max_depth: MAX_DEPTH };
                let reparsed = parse_with(&printed, limits);
                prop_assert_eq!(reparsed.as_ref(), Ok(&filter), "printed as {}", printed);
            }

            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let text = String::from_utf8_lossy(&bytes);
                let _ = parse(&text);
                let _ = parse_for(&text, &USER);
                let _ = parse_attr_path(&text);
            }

            #[test]
            fn filter_shaped_text_never_panics(text in r#"[a-zA-Z .:$\[\]()"\\0-9eE+-]{0,200}"#) {
                if let Ok(filter) = parse(&text) {
                    let _ = validate(&filter, &USER);
                    prop_assert_eq!(parse(&filter.to_string()), Ok(filter));
                }
            }
        }
    }
}

/// proptest generators of filter ASTs, shared by the tests of this module and its users.
#[cfg(test)]
pub(crate) mod strategies {
    use super::*;
    use crate::schema::ENTERPRISE_USER_SCHEMA;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
            Just("$ref".to_owned()),
            Just("not".to_owned()),
            Just("and".to_owned()),
            Just("pr".to_owned()),
            Just("true".to_owned()),
        ]
    }

    pub(crate) fn attr_path() -> impl Strategy<Value = AttrPath> {
        let urn = prop_oneof![
            Just(None),
            Just(Some(ENTERPRISE_USER_SCHEMA.to_owned())),
            Just(Some("urn:ietf:params:scim:schemas:core:2.0:User".to_owned())),
            "urn:[a-z]{1,5}(:[a-zA-Z0-9.-]{1,5}){0,3}".prop_map(Some),
        ];
        (urn, name(), proptest::option::of(name())).prop_map(|(urn, name, sub_attr)| AttrPath {
            urn,
            name,
            sub_attr,
        })
    }

    fn comp_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            Just(CompValue::Null),
            any::<bool>().prop_map(CompValue::Bool),
            any::<i64>().prop_map(|n| CompValue::Number(n.into())),
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,2})?"
                .prop_filter_map("representable", |text| JsonNumber::new(&text))
                .prop_map(CompValue::Number),
            any::<String>().prop_map(CompValue::String),
        ]
    }

    fn attr_expression() -> impl Strategy<Value = Filter> {
        prop_oneof![
            attr_path().prop_map(Filter::Present),
            (attr_path(), proptest::sample::select(CompareOp::ALL.to_vec()), comp_value())
                .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
        ]
    }

    fn combine(inner: BoxedStrategy<Filter>) -> BoxedStrategy<Filter> {
        prop_oneof![
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            proptest::collection::vec(inner, 2..4).prop_map(Filter::Or),
        ]
        .boxed()
    }

    pub(crate) fn value_filter() -> impl Strategy<Value = Filter> {
        attr_expression().prop_recursive(3, 12, 3, |inner| combine(inner.boxed()))
    }

    pub(crate) fn filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            3 => attr_expression(),
            1 => (name(), value_filter()).prop_map(|(name, inner)| Filter::ValuePath {
                path: AttrPath::new(name),
                filter: Box::new(inner),
            }),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| combine(inner.boxed()))
    }
}
