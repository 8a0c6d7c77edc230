//! The `$filter` expression grammar: operators by precedence, `in` lists,
//! method calls, lambdas (`any`/`all`) and literals, within the parser's
//! nesting and operator limits.

use jiff::Timestamp;

use super::{
    Expr, LambdaKind, Literal, MAX_OPERATORS, METHODS, OPERATORS, Operator, PResult, ParseError,
    Parser, PropertyPath,
};

impl Parser<'_> {
    /// A whole filter expression.
    pub(super) fn expression(&mut self) -> PResult<Expr> {
        self.expression_from(0)
    }

    /// Precedence climbing as in the odata-parser grammar: an operator is
    /// taken when its precedence + 1 exceeds `min`, so equal levels associate left.
    fn expression_from(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.value()?;
        loop {
            let before = self.pos;
            if let Some(op) = self.operator() {
                let precedence = op.precedence() + 1;
                if precedence > min {
                    self.operators += 1;
                    if self.operators > MAX_OPERATORS {
                        return Err(ParseError::Unsupported(format!(
                            "the query has more than {MAX_OPERATORS} operators"
                        )));
                    }
                    let rhs = self.expression_from(precedence)?;
                    lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
                    continue;
                }
                self.pos = before;
            }
            if self.boundary() && self.eat("in") && self.boundary() {
                let list = self.grouped_primitives()?;
                lhs = Expr::In(Box::new(lhs), list);
                continue;
            }
            self.pos = before;
            return Ok(lhs);
        }
    }

    fn operator(&mut self) -> Option<Operator> {
        let before = self.pos;
        self.spaces();
        for op in OPERATORS {
            let start = self.pos;
            if self.eat(op.keyword()) {
                if self.boundary() {
                    return Some(op);
                }
                self.pos = start;
            }
        }
        self.pos = before;
        None
    }

    /// `(p1, p2, …)` after `in`.
    fn grouped_primitives(&mut self) -> PResult<Vec<Expr>> {
        self.expect("(")?;
        self.spaces();
        let mut list = vec![self.primitive()?];
        while self.eat(",") {
            self.spaces();
            list.push(self.primitive()?);
        }
        self.spaces();
        self.expect(")")?;
        Ok(list)
    }

    /// The grammar's `FilterByValue`.
    fn value(&mut self) -> PResult<Expr> {
        self.nested(Self::value_inner)
    }

    fn value_inner(&mut self) -> PResult<Expr> {
        let start = self.pos;
        if self.eat("(") {
            self.spaces();
            let inner = self.expression()?;
            self.spaces();
            self.expect(")")?;
            return Ok(inner);
        }
        if let Some(call) = self.method_call()? {
            return Ok(call);
        }
        self.spaces();
        if self.eat_word("not") && self.boundary() {
            let operand = self.value()?;
            return Ok(Expr::Not(Box::new(operand)));
        }
        self.pos = start;
        if self.peek() == Some(b'@') {
            return Err(ParseError::Unsupported(
                "parameter aliases are not supported".to_owned(),
            ));
        }
        self.primitive()
    }

    fn method_call(&mut self) -> PResult<Option<Expr>> {
        let start = self.pos;
        if !self.peek_name_then(b'(') {
            return Ok(None);
        }
        let Some(name) = self.name() else {
            return Ok(None);
        };
        let Some((_, counts)) = METHODS.iter().find(|(method, _)| *method == name) else {
            self.pos = start;
            return Ok(None);
        };
        self.expect("(")?;
        self.spaces();
        let mut args = Vec::new();
        if self.peek() != Some(b')') {
            args.push(self.expression()?);
            loop {
                let before = self.pos;
                self.spaces();
                if self.eat(",") {
                    self.spaces();
                    args.push(self.expression()?);
                } else {
                    self.pos = before;
                    break;
                }
            }
        }
        self.spaces();
        if !counts.contains(&args.len()) {
            return Err(ParseError::Malformed);
        }
        self.expect(")")?;
        Ok(Some(Expr::Call(name, args)))
    }

    /// The grammar's `Primitive`: literals and property paths (with lambdas).
    fn primitive(&mut self) -> PResult<Expr> {
        if self.eat("(") {
            self.spaces();
            let inner = self.nested(Self::primitive)?;
            self.spaces();
            self.expect(")")?;
            return Ok(inner);
        }
        if self.peek_apostrophe() {
            return Ok(Expr::Literal(Literal::Text(self.quoted_text()?)));
        }
        if let Some(number) = self.number() {
            return Ok(Expr::Literal(number));
        }
        if self.eat_word("true") {
            return Ok(Expr::Literal(Literal::Boolean(true)));
        }
        if self.eat_word("false") {
            return Ok(Expr::Literal(Literal::Boolean(false)));
        }
        if self.eat_word("null") {
            return Ok(Expr::Literal(Literal::Null));
        }
        let start = self.pos;
        if self.eat("datetime") && self.peek_apostrophe() {
            let text = self.quoted_text()?;
            let at: Timestamp = text.parse().map_err(|_| ParseError::Malformed)?;
            return Ok(Expr::Literal(Literal::DateTime(at)));
        }
        self.pos = start;
        if self.eat("duration") && self.peek_apostrophe() {
            return Err(ParseError::Unsupported(
                "duration literals are not supported".to_owned(),
            ));
        }
        self.pos = start;
        self.path_or_lambda()
    }

    fn path_or_lambda(&mut self) -> PResult<Expr> {
        let mut names = vec![self.name().ok_or(ParseError::Malformed)?];
        loop {
            if self.peek() == Some(b'(') {
                return Err(ParseError::Unsupported(
                    "keys and methods on navigations are not supported".to_owned(),
                ));
            }
            if self.peek() != Some(b'/') {
                return Ok(Expr::Path(PropertyPath { names, count: None }));
            }
            self.pos += 1;
            if self.eat("$count") {
                let filter = self.count_filter()?;
                return Ok(Expr::Path(PropertyPath {
                    names,
                    count: Some(filter),
                }));
            }
            for (word, kind) in [("any(", LambdaKind::Any), ("all(", LambdaKind::All)] {
                if self.eat(word) {
                    self.spaces();
                    let variable = self.name().ok_or(ParseError::Malformed)?;
                    self.expect(":")?;
                    let body = self.expression()?;
                    self.spaces();
                    self.expect(")")?;
                    return Ok(Expr::Lambda {
                        names,
                        kind,
                        variable,
                        body: Box::new(body),
                    });
                }
            }
            names.push(self.name().ok_or(ParseError::Malformed)?);
        }
    }
}
