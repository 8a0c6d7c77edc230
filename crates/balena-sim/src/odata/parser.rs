//! A parser for pinejs OData URLs that reads the raw, undecoded text the way
//! `balena-io-modules/odata-parser` does: structural characters must be
//! literal, only `$`, `'` and spaces have encoded forms, and percent-escapes are
//! decoded inside string literals only. Names are not checked here; that is
//! the binder's job (see `eval.rs`).

use jiff::Timestamp;

mod expr;

/// Why a URL could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// The grammar rejects the text.
    Malformed,
    /// The grammar accepts it, but the simulator does not implement it.
    Unsupported(String),
}

type PResult<T> = Result<T, ParseError>;

/// The resource part of a URL: `release`, `release(1)`, `release/$count`, `release(1)/$count`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    pub resource: String,
    pub key: Option<Literal>,
    pub count: bool,
}

/// The query options of a resource or of one expanded navigation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub select: Option<Select>,
    pub filter: Option<Expr>,
    pub expand: Option<Vec<ExpandItem>>,
    pub orderby: Option<Vec<OrderItem>>,
    pub top: Option<u64>,
    pub skip: Option<u64>,
    /// `$count=true|false` (accepted by the grammar, refused by the binder).
    pub count: Option<bool>,
    /// `$format=…`: the content type and the metadata level, if any.
    pub format: Option<(String, Option<String>)>,
    /// `$inlinecount=…`.
    pub inlinecount: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    All,
    Paths(Vec<PropertyPath>),
}

/// One `$expand` entry: `nav`, `nav(options)`, `nav/$count`, `nav/$count(options)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandItem {
    pub name: String,
    pub count: bool,
    pub options: Options,
}

/// One `$orderby` entry. Without `asc`/`desc` the odata-parser grammar
/// yields `desc`, and pinejs sorts that way.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub path: PropertyPath,
    pub descending: bool,
}

/// A slash-separated path of names, possibly ending in `/$count`
/// (with an optional `($filter=…)`).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyPath {
    pub names: Vec<String>,
    pub count: Option<Option<Box<Expr>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Boolean(bool),
    Integer(i64),
    /// A number with a fraction, or an integer too large for `i64`.
    Decimal(String),
    Text(String),
    DateTime(Timestamp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl Operator {
    /// Binding strength, as in the odata-parser grammar (`and` and `or` are equal).
    fn precedence(self) -> u8 {
        match self {
            Operator::And | Operator::Or => 0,
            Operator::Eq
            | Operator::Ne
            | Operator::Gt
            | Operator::Ge
            | Operator::Lt
            | Operator::Le => 1,
            Operator::Sub => 2,
            Operator::Add => 3,
            Operator::Mod => 4,
            Operator::Div => 5,
            Operator::Mul => 6,
        }
    }

    pub fn keyword(self) -> &'static str {
        match self {
            Operator::Eq => "eq",
            Operator::Ne => "ne",
            Operator::Gt => "gt",
            Operator::Ge => "ge",
            Operator::Lt => "lt",
            Operator::Le => "le",
            Operator::And => "and",
            Operator::Or => "or",
            Operator::Add => "add",
            Operator::Sub => "sub",
            Operator::Mul => "mul",
            Operator::Div => "div",
            Operator::Mod => "mod",
        }
    }
}

const OPERATORS: [Operator; 13] = [
    Operator::Eq,
    Operator::Ne,
    Operator::Gt,
    Operator::Ge,
    Operator::Lt,
    Operator::Le,
    Operator::And,
    Operator::Or,
    Operator::Sub,
    Operator::Add,
    Operator::Mod,
    Operator::Div,
    Operator::Mul,
];

/// The methods of the grammar with their allowed argument counts.
const METHODS: &[(&str, &[usize])] = &[
    ("cast", &[1, 2]),
    ("ceiling", &[1]),
    ("concat", &[2]),
    ("contains", &[2]),
    ("date", &[1]),
    ("day", &[1]),
    ("endswith", &[2]),
    ("floor", &[1]),
    ("fractionalseconds", &[1]),
    ("hour", &[1]),
    ("indexof", &[2]),
    ("isof", &[1, 2]),
    ("length", &[1]),
    ("maxdatetime", &[0]),
    ("mindatetime", &[0]),
    ("minute", &[1]),
    ("month", &[1]),
    ("now", &[0]),
    ("replace", &[3]),
    ("round", &[1]),
    ("second", &[1]),
    ("startswith", &[2]),
    ("substringof", &[2]),
    ("substring", &[2, 3]),
    ("time", &[1]),
    ("tolower", &[1]),
    ("totaloffsetminutes", &[1]),
    ("totalseconds", &[1]),
    ("toupper", &[1]),
    ("trim", &[1]),
    ("year", &[1]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaKind {
    Any,
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    Path(PropertyPath),
    Lambda {
        names: Vec<String>,
        kind: LambdaKind,
        variable: String,
        body: Box<Expr>,
    },
    Not(Box<Expr>),
    Binary(Operator, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Expr>),
    Call(String, Vec<Expr>),
}

/// Parses the path after `/v7/`.
pub fn parse_path(path: &str) -> PResult<ResourcePath> {
    let mut p = Parser::new(path);
    let resource = p.name().ok_or(ParseError::Malformed)?;
    let mut key = None;
    if p.eat("(") {
        if p.peek_name_then(b'=') {
            let name = p.name().ok_or(ParseError::Malformed)?;
            p.expect("=")?;
            let value = p.key_value()?;
            if name != "id" {
                return Err(ParseError::Unsupported(format!(
                    "the key `{name}` is not supported, only `id`"
                )));
            }
            key = Some(value);
        } else {
            key = Some(p.key_value()?);
        }
        p.expect(")")?;
    }
    let count = p.eat("/$count");
    if !p.at_end() {
        if p.peek() == Some(b'/') && key.is_some() && !count {
            return Err(ParseError::Unsupported(
                "navigation paths in the url are not supported".to_owned(),
            ));
        }
        return Err(ParseError::Malformed);
    }
    Ok(ResourcePath {
        resource,
        key,
        count,
    })
}

/// The resource name a path starts with (empty when it starts with no name).
pub fn resource_name(path: &str) -> &str {
    let end = path
        .bytes()
        .position(|b| !is_name_byte(b))
        .unwrap_or(path.len());
    &path[..end]
}

/// Parses a whole raw query string (without `?`).
pub fn parse_query(query: &str) -> PResult<Options> {
    let mut p = Parser::new(query);
    if p.at_end() {
        return Ok(Options::default());
    }
    let options = p.options(false)?;
    if !p.at_end() {
        return Err(ParseError::Malformed);
    }
    Ok(options)
}

/// How deeply parentheses, `not`, calls, lambdas and `$expand` may nest; deeper
/// input is refused rather than risking the stack.
const MAX_DEPTH: usize = 48;

/// How many binary operators one URL may hold (a long `and` chain is a deep
/// tree for the evaluator).
const MAX_OPERATORS: usize = 400;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    operators: usize,
}

fn is_name_byte(b: u8) -> bool {
    is_text_byte(b) && !matches!(b, b' ' | b'%' | b'\'')
}

fn is_text_byte(b: u8) -> bool {
    !matches!(
        b,
        b':' | b'/'
            | b'?'
            | b'#'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'*'
            | b'&'
            | b'('
            | b')'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text,
            pos: 0,
            depth: 0,
            operators: 0,
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos == self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.rest().starts_with(literal) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, literal: &str) -> PResult<()> {
        if self.eat(literal) {
            Ok(())
        } else {
            Err(ParseError::Malformed)
        }
    }

    fn eat_dollar(&mut self) -> bool {
        self.eat("$") || self.eat("%24")
    }

    fn eat_apostrophe(&mut self) -> bool {
        self.eat("'") || self.eat("%27")
    }

    fn peek_apostrophe(&self) -> bool {
        let rest = self.rest();
        rest.starts_with('\'') || rest.starts_with("%27")
    }

    fn eat_space(&mut self) -> bool {
        self.eat(" ") || self.eat("%20") || self.eat("+")
    }

    /// Zero or more spaces.
    fn spaces(&mut self) {
        while self.eat_space() {}
    }

    /// The grammar's `boundary`: an opening parenthesis ahead, or at least one space.
    fn boundary(&mut self) -> bool {
        if self.peek() == Some(b'(') {
            return true;
        }
        let mut any = false;
        while self.eat_space() {
            any = true;
        }
        any
    }

    /// A resource, field or variable name (the grammar's `ResourceName`).
    fn name(&mut self) -> Option<String> {
        let rest = self.rest().as_bytes();
        let len = rest.iter().take_while(|b| is_name_byte(**b)).count();
        if len == 0 {
            return None;
        }
        let name = self.text[self.pos..self.pos + len].to_owned();
        self.pos += len;
        Some(name)
    }

    /// Whether a name follows, directly followed by `next`.
    fn peek_name_then(&self, next: u8) -> bool {
        let rest = self.rest().as_bytes();
        let len = rest.iter().take_while(|b| is_name_byte(**b)).count();
        len > 0 && rest.get(len) == Some(&next)
    }

    /// A keyword that is not the start of a longer name.
    fn eat_word(&mut self, word: &str) -> bool {
        let rest = self.rest();
        if rest.starts_with(word)
            && !rest
                .as_bytes()
                .get(word.len())
                .is_some_and(|b| is_name_byte(*b))
        {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn unsigned(&mut self) -> PResult<u64> {
        let rest = self.rest().as_bytes();
        let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err(ParseError::Malformed);
        }
        let digits = &self.text[self.pos..self.pos + len];
        self.pos += len;
        Ok(digits.parse::<u64>().unwrap_or(u64::MAX))
    }

    fn key_value(&mut self) -> PResult<Literal> {
        if self.peek_apostrophe() {
            return Ok(Literal::Text(self.quoted_text()?));
        }
        self.number().ok_or(ParseError::Malformed)
    }

    /// `[+|%2B|-]digits[.digits]`.
    fn number(&mut self) -> Option<Literal> {
        let start = self.pos;
        let negative = if self.eat("-") {
            true
        } else {
            let _ = self.eat("+") || self.eat("%2B");
            false
        };
        let digits_start = self.pos;
        let int_len = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            self.pos = start;
            return None;
        }
        self.pos += int_len;
        let mut fraction = "";
        let after_int = self.pos;
        if self.eat(".") {
            let frac_len = self.rest().bytes().take_while(u8::is_ascii_digit).count();
            if frac_len == 0 {
                self.pos = after_int;
            } else {
                fraction = &self.text[self.pos..self.pos + frac_len];
                self.pos += frac_len;
            }
        }
        let digits = &self.text[digits_start..digits_start + int_len];
        let sign = if negative { "-" } else { "" };
        if fraction.is_empty() {
            match format!("{sign}{digits}").parse::<i64>() {
                Ok(n) => Some(Literal::Integer(n)),
                Err(_) => Some(Literal::Decimal(format!("{sign}{digits}"))),
            }
        } else {
            Some(Literal::Decimal(format!("{sign}{digits}.{fraction}")))
        }
    }

    /// `'…'` (each `'` may be `%27`, `''` stands for one `'`); the content is
    /// percent-decoded and a raw `+` reads as a space.
    fn quoted_text(&mut self) -> PResult<String> {
        if !self.eat_apostrophe() {
            return Err(ParseError::Malformed);
        }
        let mut raw = Vec::new();
        loop {
            if self.eat_apostrophe() {
                if self.eat_apostrophe() {
                    raw.push(b'\'');
                    continue;
                }
                break;
            }
            let Some(b) = self.peek() else {
                return Err(ParseError::Malformed);
            };
            raw.push(b);
            self.pos += 1;
        }
        let mut decoded = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'%' => {
                    let hex = raw.get(i + 1..i + 3).ok_or(ParseError::Malformed)?;
                    let hex = std::str::from_utf8(hex).map_err(|_| ParseError::Malformed)?;
                    let byte = u8::from_str_radix(hex, 16).map_err(|_| ParseError::Malformed)?;
                    decoded.push(byte);
                    i += 3;
                }
                b'+' => {
                    decoded.push(b' ');
                    i += 1;
                }
                b => {
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(decoded).map_err(|_| ParseError::Malformed)
    }

    /// Options separated by `&` (top level) or by `&`/`;` (inside `$expand`).
    fn options(&mut self, nested: bool) -> PResult<Options> {
        let mut options = Options::default();
        loop {
            self.option(&mut options)?;
            if self.eat("&") || (nested && self.eat(";")) {
                continue;
            }
            return Ok(options);
        }
    }

    fn option(&mut self, options: &mut Options) -> PResult<()> {
        fn set<T>(slot: &mut Option<T>, value: T, name: &str) -> PResult<()> {
            if slot.is_some() {
                return Err(ParseError::Unsupported(format!(
                    "the option `${name}` is given more than once"
                )));
            }
            *slot = Some(value);
            Ok(())
        }
        if self.eat_dollar() {
            if self.eat("select=") {
                let select = if self.eat("*") {
                    Select::All
                } else {
                    Select::Paths(self.path_list()?)
                };
                set(&mut options.select, select, "select")
            } else if self.eat("filter=") {
                let filter = self.expression()?;
                set(&mut options.filter, filter, "filter")
            } else if self.eat("expand=") {
                let expand = self.expand_list()?;
                set(&mut options.expand, expand, "expand")
            } else if self.eat("orderby=") {
                let orderby = self.orderby_list()?;
                set(&mut options.orderby, orderby, "orderby")
            } else if self.eat("top=") {
                let top = self.unsigned()?;
                set(&mut options.top, top, "top")
            } else if self.eat("skip=") {
                let skip = self.unsigned()?;
                set(&mut options.skip, skip, "skip")
            } else if self.eat("count=") {
                let count = if self.eat_word("true") {
                    true
                } else if self.eat_word("false") {
                    false
                } else {
                    return Err(ParseError::Malformed);
                };
                set(&mut options.count, count, "count")
            } else if self.eat("inlinecount=") {
                let len = self.rest().bytes().take_while(|b| is_text_byte(*b)).count();
                let value = self.text[self.pos..self.pos + len].to_owned();
                self.pos += len;
                set(&mut options.inlinecount, value, "inlinecount")
            } else if self.eat("format=") {
                let format = self.format()?;
                set(&mut options.format, format, "format")
            } else {
                Err(ParseError::Malformed)
            }
        } else if self.peek() == Some(b'@') {
            Err(ParseError::Unsupported(
                "parameter aliases are not supported".to_owned(),
            ))
        } else {
            // A custom parameter (`name=value`), which pinejs ignores.
            let len = self.rest().bytes().take_while(|b| is_text_byte(*b)).count();
            self.pos += len;
            self.expect("=")?;
            let len = self.rest().bytes().take_while(|b| is_text_byte(*b)).count();
            self.pos += len;
            Ok(())
        }
    }

    fn format(&mut self) -> PResult<(String, Option<String>)> {
        let letters = |p: &Parser<'_>| p.rest().bytes().take_while(u8::is_ascii_alphabetic).count();
        let start = self.pos;
        let len = letters(self);
        if len == 0 {
            return Err(ParseError::Malformed);
        }
        self.pos += len;
        if self.eat("/") {
            let len = letters(self);
            if len == 0 {
                return Err(ParseError::Malformed);
            }
            self.pos += len;
            let before_plus = self.pos;
            if self.eat("+") {
                let len = letters(self);
                if len == 0 {
                    self.pos = before_plus;
                } else {
                    self.pos += len;
                }
            }
        }
        let content_type = self.text[start..self.pos].to_owned();
        let before = self.pos;
        if self.eat(";") {
            let _ = self.eat("odata.");
            if self.eat("metadata=") {
                for level in ["none", "minimal", "full"] {
                    if self.eat(level) {
                        return Ok((content_type, Some(level.to_owned())));
                    }
                }
            }
            self.pos = before;
        }
        Ok((content_type, None))
    }

    fn path_list(&mut self) -> PResult<Vec<PropertyPath>> {
        let mut paths = vec![self.property_path()?];
        while self.eat(",") {
            paths.push(self.property_path()?);
        }
        Ok(paths)
    }

    /// `name(/name)*` with an optional `/$count[($filter=…)]` at the end.
    fn property_path(&mut self) -> PResult<PropertyPath> {
        let mut names = vec![self.name().ok_or(ParseError::Malformed)?];
        loop {
            if self.peek() == Some(b'(') {
                return Err(ParseError::Unsupported(
                    "keys inside property paths are not supported".to_owned(),
                ));
            }
            if self.eat("/$count") {
                let filter = self.count_filter()?;
                return Ok(PropertyPath {
                    names,
                    count: Some(filter),
                });
            }
            if self.rest().starts_with('/')
                && self
                    .rest()
                    .as_bytes()
                    .get(1)
                    .is_some_and(|b| is_name_byte(*b))
            {
                self.pos += 1;
                names.push(self.name().ok_or(ParseError::Malformed)?);
                continue;
            }
            return Ok(PropertyPath { names, count: None });
        }
    }

    /// The optional `($filter=…)` after `/$count` in a property path.
    fn count_filter(&mut self) -> PResult<Option<Box<Expr>>> {
        let start = self.pos;
        if self.eat("(") {
            if self.eat_dollar() && self.eat("filter=") {
                let filter = self.expression()?;
                if self.eat(")") {
                    return Ok(Some(Box::new(filter)));
                }
            }
            self.pos = start;
        }
        Ok(None)
    }

    fn expand_list(&mut self) -> PResult<Vec<ExpandItem>> {
        let mut items = vec![self.expand_item()?];
        while self.eat(",") {
            items.push(self.expand_item()?);
        }
        Ok(items)
    }

    fn expand_item(&mut self) -> PResult<ExpandItem> {
        self.nested(Self::expand_item_inner)
    }

    /// Runs `parse` one nesting level deeper.
    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_DEPTH {
            return Err(ParseError::Unsupported(format!(
                "the query nests more than {MAX_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn expand_item_inner(&mut self) -> PResult<ExpandItem> {
        let name = self.name().ok_or(ParseError::Malformed)?;
        let count = self.eat("/$count");
        let mut options = Options::default();
        if self.eat("(") && !self.eat(")") {
            options = self.options(true)?;
            self.expect(")")?;
        }
        if self.peek() == Some(b'/') {
            self.pos += 1;
            self.property_path()?;
            return Err(ParseError::Unsupported(
                "`$expand` paths through several navigations are not supported; nest `$expand` instead"
                    .to_owned(),
            ));
        }
        Ok(ExpandItem {
            name,
            count,
            options,
        })
    }

    fn orderby_list(&mut self) -> PResult<Vec<OrderItem>> {
        let mut items = Vec::new();
        loop {
            let path = self.property_path()?;
            let before = self.pos;
            let descending = if self.boundary() {
                if self.eat_word("asc") {
                    false
                } else if self.eat_word("desc") {
                    true
                } else {
                    self.pos = before;
                    true
                }
            } else {
                true
            };
            items.push(OrderItem { path, descending });
            if !self.eat(",") {
                return Ok(items);
            }
        }
    }
}

#[cfg(test)]
mod tests;
