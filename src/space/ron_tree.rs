//! A RON value tree that remembers where each value starts, for messages at `LINE:COLUMN`.
//!
//! serde's RON reader checks a whole file and reports syntax errors, but forgets positions once a
//! value is read. The architecture language needs them after reading (an unknown part, a
//! reference to no parameter, a kernel that is not odd), so its part of the file is read again
//! here into a [`Value`] tree. Only the RON that serde already accepted reaches this reader.

/// A 1-based line and column (columns count characters, as RON's own positions do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One RON value and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// A bare name: `Relu`, `BatchNorm`, `Same`.
    Ident(String),
    /// A name with arguments, `Conv(32, 3)` or `Conv(channels: 32)`; the file's top-level
    /// struct is one with an empty name.
    Call {
        name: String,
        args: Args,
    },
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

/// The arguments of a call: all by position or all by name (RON does not mix them).
#[derive(Clone, Debug, PartialEq)]
pub enum Args {
    Positional(Vec<Value>),
    Named(Vec<(String, Pos, Value)>),
}

impl Args {
    pub fn is_empty(&self) -> bool {
        match self {
            Args::Positional(v) => v.is_empty(),
            Args::Named(v) => v.is_empty(),
        }
    }
}

impl Value {
    /// The value of the named field `key` of a call such as the file's top-level struct.
    pub fn field(&self, key: &str) -> Option<&Value> {
        match &self.kind {
            Kind::Call {
                args: Args::Named(fields),
                ..
            } => fields.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    /// What the value is, in a few words, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Int(i) => format!("the integer {i}"),
            Kind::Float(x) => format!("the number {x}"),
            Kind::Bool(b) => format!("`{b}`"),
            Kind::Str(s) => format!("the string \"{s}\""),
            Kind::Ident(n) => format!("`{n}`"),
            Kind::Call { name, .. } if name.is_empty() => "a struct `(..)`".into(),
            Kind::Call { name, .. } => format!("`{name}(..)`"),
            Kind::List(_) => "a list `[..]`".into(),
            Kind::Map(_) => "a map `{..}`".into(),
        }
    }
}

/// Why the text is not RON this reader understands, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

/// Reads the whole text as one value (the file's top-level struct).
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    p.skip_blank()?;
    // `#![enable(..)]` extension attributes come before the value.
    while p.peek() == Some('#') {
        while !matches!(p.peek(), None | Some('\n')) {
            p.bump();
        }
        p.skip_blank()?;
    }
    let v = p.value()?;
    p.skip_blank()?;
    if p.peek().is_some() {
        return Err(p.err("unexpected text after the end of the value"));
    }
    Ok(v)
}

/// Positional arguments followed by a named one, or the other way round.
const MIXED: &str =
    "arguments are all by position or all by name (`name: value`); RON does not mix the two";

struct Parser {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn err(&self, message: &str) -> ParseError {
        ParseError {
            pos: self.pos(),
            message: message.to_string(),
        }
    }

    /// Skips white space and comments (`//` to the end of the line, nested `/* */`).
    fn skip_blank(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(), self.chars.get(self.i + 1).copied()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    let mut depth = 1;
                    while depth > 0 {
                        match (self.bump(), self.peek()) {
                            (None, _) => {
                                return Err(ParseError {
                                    pos: start,
                                    message: "unclosed block comment".into(),
                                })
                            }
                            (Some('*'), Some('/')) => {
                                self.bump();
                                depth -= 1;
                            }
                            (Some('/'), Some('*')) => {
                                self.bump();
                                depth += 1;
                            }
                            _ => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        self.skip_blank()?;
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.err(&format!("expected `{c}`")))
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_blank()?;
        let pos = self.pos();
        let kind = match self.peek() {
            None => return Err(self.err("unexpected end of the file")),
            Some('"') => Kind::Str(self.string()?),
            Some('[') => {
                self.bump();
                Kind::List(self.items(']', Parser::value)?)
            }
            Some('{') => {
                self.bump();
                Kind::Map(self.items('}', |p| {
                    let k = p.value()?;
                    p.expect(':')?;
                    Ok((k, p.value()?))
                })?)
            }
            Some('(') => Kind::Call {
                name: String::new(),
                args: self.args()?,
            },
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number()?,
            Some(c) if c.is_alphabetic() || c == '_' => {
                let name = self.ident();
                self.skip_blank()?;
                match name.as_str() {
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    "inf" | "NaN" => Kind::Float(if name == "inf" {
                        f64::INFINITY
                    } else {
                        f64::NAN
                    }),
                    _ if self.peek() == Some('(') => Kind::Call {
                        name,
                        args: self.args()?,
                    },
                    _ => Kind::Ident(name),
                }
            }
            Some(c) => return Err(self.err(&format!("unexpected character `{c}`"))),
        };
        Ok(Value { pos, kind })
    }

    /// Comma-separated items up to `close` (a trailing comma allowed); the opener is consumed.
    fn items<T>(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Parser) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_blank()?;
            if self.peek() == Some(close) {
                self.bump();
                return Ok(out);
            }
            out.push(item(self)?);
            self.skip_blank()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                _ => return Err(self.err(&format!("expected `,` or `{close}`"))),
            }
        }
    }

    /// `( .. )`: named fields when the first item is `name:`, else positional values.
    fn args(&mut self) -> Result<Args, ParseError> {
        self.expect('(')?;
        self.skip_blank()?;
        let save = (self.i, self.line, self.col);
        let named = if self.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            self.ident();
            self.skip_blank()?;
            self.peek() == Some(':')
        } else {
            false
        };
        (self.i, self.line, self.col) = save;
        if named {
            Ok(Args::Named(self.items(')', |p| {
                p.skip_blank()?;
                let pos = p.pos();
                let key = p.ident();
                if key.is_empty() {
                    return Err(p.err(MIXED));
                }
                p.expect(':')?;
                Ok((key, pos, p.value()?))
            })?))
        } else {
            Ok(Args::Positional(self.items(')', |p| {
                let v = p.value()?;
                p.skip_blank()?;
                if p.peek() == Some(':') {
                    // `name:` after positional arguments: point at the name.
                    return Err(ParseError {
                        pos: v.pos,
                        message: MIXED.into(),
                    });
                }
                Ok(v)
            })?))
        }
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            s.push(c);
            self.bump();
        }
        s
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos();
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ParseError {
                        pos: start,
                        message: "unclosed string".into(),
                    })
                }
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some(c) => s.push(c),
                    None => return Err(self.err("unclosed string")),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Kind, ParseError> {
        let start = self.pos();
        let mut s = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '_'))
        {
            // A sign is part of a number only at its start or after an exponent.
            if matches!(c, '-' | '+') && !(s.is_empty() || s.ends_with(['e', 'E'])) {
                break;
            }
            s.push(c);
            self.bump();
        }
        let clean = s.replace('_', "");
        if let Ok(i) = clean.parse::<i64>() {
            return Ok(Kind::Int(i));
        }
        clean
            .parse::<f64>()
            .map(Kind::Float)
            .map_err(|_| ParseError {
                pos: start,
                message: format!("`{s}` is not a number"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_calls_lists_maps_and_positions() {
        let text = "// c\n(\n  a: Conv(32, kernel: 3),\n)";
        assert!(parse(text).is_err(), "mixed arguments are not RON");
        let text =
            "// c\n(\n  a: [Conv(channels: 32), Relu, -1.5e-3],\n  b: {\"k\": Choice([3, 5])},\n)";
        let v = parse(text).unwrap();
        let a = v.field("a").unwrap();
        assert_eq!(a.pos, Pos { line: 3, col: 6 });
        let Kind::List(items) = &a.kind else { panic!() };
        assert_eq!(items[1].kind, Kind::Ident("Relu".into()));
        assert_eq!(items[2].kind, Kind::Float(-1.5e-3));
        assert_eq!(items[2].pos, Pos { line: 3, col: 33 });
        let Kind::Call { name, args } = &items[0].kind else {
            panic!()
        };
        assert_eq!(name, "Conv");
        assert!(matches!(args, Args::Named(f) if f[0].0 == "channels"));
        let Kind::Map(m) = &v.field("b").unwrap().kind else {
            panic!()
        };
        assert_eq!(m[0].0.kind, Kind::Str("k".into()));
    }
}
