//! Binds parsed OData options to the schema (unknown names and type
//! mismatches become 400s before any row is read) and evaluates them over the
//! in-memory tables with SQL semantics: three-valued logic, `eq`/`ne` as
//! `IS [NOT] DISTINCT FROM`, nulls sorting last ascending.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Map, Value as Json};

use super::ApiVersion;
use super::parser::{Expr, LambdaKind, Literal, Operator, Options, PropertyPath, Select};
use crate::db::{Db, FieldType, Resource, Row, Value, field_index, resource_schema};

/// A bind-time error: the message of a 400.
pub type BindError = String;

/// Options bound to one resource, ready to run.
#[derive(Debug)]
pub struct Query {
    pub resource: &'static Resource,
    pub filter: Option<Filter>,
    /// Selected field indexes in schema order; `None` for all.
    select: Option<Vec<usize>>,
    expand: Vec<Expansion>,
    orderby: Vec<(FieldPath, bool)>,
    top: Option<u64>,
    skip: Option<u64>,
}

/// A bound `$filter`, with the resources of its lambda scopes.
#[derive(Debug)]
pub struct Filter {
    pub expr: BExpr,
}

#[derive(Debug)]
struct Expansion {
    name: &'static str,
    nav: Nav,
    count: bool,
    query: Query,
}

/// One navigation step from a row.
#[derive(Debug, Clone, Copy)]
pub enum Nav {
    /// A foreign key of the row (0 or 1 target row).
    Forward {
        field: usize,
        target: &'static Resource,
    },
    /// The rows of `target` whose foreign key `via` points at the row.
    Reverse {
        target: &'static Resource,
        /// The position of the foreign key in `target`'s rows.
        via: usize,
    },
}

impl Nav {
    fn target(self) -> &'static Resource {
        match self {
            Nav::Forward { target, .. } | Nav::Reverse { target, .. } => target,
        }
    }
}

/// A scalar reached from a scope through single-valued foreign keys.
#[derive(Debug, Clone)]
pub struct FieldPath {
    scope: usize,
    hops: Hops,
    pub field: usize,
    pub ty: FieldType,
}

/// Single-valued foreign-key steps: (field index, target resource).
type Hops = Vec<(usize, &'static Resource)>;

/// A collection reached from a scope: foreign-key hops, then a navigation.
#[derive(Debug, Clone)]
pub struct NavPath {
    scope: usize,
    hops: Hops,
    last: Nav,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Null,
    Bool,
    Number,
    Text,
    Date,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    StartsWith,
    EndsWith,
    Contains,
    ToLower,
    ToUpper,
    Trim,
    Length,
    IndexOf,
    Concat,
}

/// A bound filter expression.
#[derive(Debug)]
pub enum BExpr {
    Null,
    Bool(bool),
    Number(i128),
    Text(String),
    Date(Timestamp),
    Field(FieldPath),
    Not(Box<BExpr>),
    And(Box<BExpr>, Box<BExpr>),
    Or(Box<BExpr>, Box<BExpr>),
    Compare(Cmp, Box<BExpr>, Box<BExpr>),
    In(Box<BExpr>, Vec<BExpr>),
    Lambda {
        path: NavPath,
        all: bool,
        /// The scope index of the lambda variable inside `body`.
        variable: usize,
        body: Box<BExpr>,
    },
    Count {
        path: NavPath,
        filter: Option<Box<BExpr>>,
    },
    Call(Func, Vec<BExpr>),
}

fn ty_of(field: FieldType) -> Ty {
    match field {
        FieldType::Integer | FieldType::BigInteger | FieldType::ForeignKey(_) => Ty::Number,
        FieldType::Text => Ty::Text,
        FieldType::DateTime => Ty::Date,
        FieldType::Boolean => Ty::Bool,
        FieldType::Json => Ty::Json,
    }
}

fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Null => "null",
        Ty::Bool => "boolean",
        Ty::Number => "number",
        Ty::Text => "text",
        Ty::Date => "date",
        Ty::Json => "json",
    }
}

/// What a name means on a resource.
enum Member {
    Field(usize, FieldType),
    Reverse(Nav),
}

fn member(resource: &'static Resource, name: &str) -> Result<Member, BindError> {
    if let Ok(index) = field_index(resource, name) {
        return Ok(Member::Field(index, resource.fields[index].ty));
    }
    if let Some(reverse) = resource.reverse.iter().find(|nav| nav.name == name) {
        let target = resource_schema(reverse.resource).map_err(|e| e.0)?;
        let via = field_index(target, reverse.via).map_err(|e| e.0)?;
        return Ok(Member::Reverse(Nav::Reverse { target, via }));
    }
    Err(format!(
        "unknown field or navigation `{name}` on `{}`",
        resource.name
    ))
}

fn navigation(resource: &'static Resource, name: &str) -> Result<Nav, BindError> {
    match member(resource, name)? {
        Member::Field(field, FieldType::ForeignKey(target)) => Ok(Nav::Forward {
            field,
            target: resource_schema(target).map_err(|e| e.0)?,
        }),
        Member::Field(..) => Err(format!(
            "`{name}` on `{}` is a field, not a navigation",
            resource.name
        )),
        Member::Reverse(nav) => Ok(nav),
    }
}

/// The resources visible in a filter: the filtered resource first, then lambda variables.
struct Scopes<'n> {
    stack: Vec<(Option<&'n str>, &'static Resource)>,
}

impl<'n> Scopes<'n> {
    fn root(resource: &'static Resource) -> Scopes<'n> {
        Scopes {
            stack: vec![(None, resource)],
        }
    }

    /// Splits a path into its starting scope and the names after it.
    fn start<'p>(&self, names: &'p [String]) -> (usize, &'static Resource, &'p [String]) {
        if names.len() > 1 {
            for (index, (variable, resource)) in self.stack.iter().enumerate().rev() {
                if *variable == Some(names[0].as_str()) {
                    return (index, resource, &names[1..]);
                }
            }
        }
        (0, self.stack[0].1, names)
    }

    /// Follows single-valued foreign keys through all but the last name.
    fn hops(
        resource: &'static Resource,
        names: &[String],
    ) -> Result<(Hops, &'static Resource), BindError> {
        let mut hops = Vec::new();
        let mut at = resource;
        for name in names {
            match navigation(at, name)? {
                Nav::Forward { field, target } => {
                    hops.push((field, target));
                    at = target;
                }
                Nav::Reverse { .. } => {
                    return Err(format!(
                        "`{name}` on `{}` is a collection; use `any` or `all` to filter through it",
                        at.name
                    ));
                }
            }
        }
        Ok((hops, at))
    }

    fn field_path(&self, names: &[String]) -> Result<FieldPath, BindError> {
        let (scope, resource, names) = self.start(names);
        let Some((last, through)) = names.split_last() else {
            return Err("a lambda variable alone is not a value".to_owned());
        };
        let (hops, at) = Self::hops(resource, through)?;
        match member(at, last)? {
            Member::Field(field, ty) => Ok(FieldPath {
                scope,
                hops,
                field,
                ty,
            }),
            Member::Reverse(_) => Err(format!(
                "`{last}` on `{}` is a collection, not a value",
                at.name
            )),
        }
    }

    fn nav_path(&self, names: &[String]) -> Result<NavPath, BindError> {
        let (scope, resource, names) = self.start(names);
        let Some((last, through)) = names.split_last() else {
            return Err("a lambda needs a navigation".to_owned());
        };
        let (hops, at) = Self::hops(resource, through)?;
        Ok(NavPath {
            scope,
            hops,
            last: navigation(at, last)?,
        })
    }
}

/// Binds options to a resource; `count_only` for `/$count` requests and expansions.
pub fn bind_query(resource: &'static Resource, options: &Options) -> Result<Query, BindError> {
    if options.count.is_some() {
        return Err("the option `$count` is not supported; use `/$count`".to_owned());
    }
    if options.inlinecount.is_some() {
        return Err("the option `$inlinecount` is not supported".to_owned());
    }
    if let Some((content_type, metadata)) = &options.format {
        if content_type != "json" && content_type != "application/json" {
            return Err(format!("the format `{content_type}` is not supported"));
        }
        if metadata.as_deref() == Some("full") {
            return Err("`odata.metadata=full` is not supported".to_owned());
        }
    }
    let filter = match &options.filter {
        Some(expr) => Some(bind_filter(resource, expr)?),
        None => None,
    };
    let select = match &options.select {
        None | Some(Select::All) => None,
        Some(Select::Paths(paths)) => {
            let mut indexes = Vec::new();
            for path in paths {
                let [name] = path.names.as_slice() else {
                    return Err("`$select` paths through navigations are not supported".to_owned());
                };
                if path.count.is_some() {
                    return Err("`$select` does not take `/$count`".to_owned());
                }
                match member(resource, name)? {
                    Member::Field(index, _) => indexes.push(index),
                    Member::Reverse(_) => {
                        return Err(format!(
                            "`{name}` on `{}` is a navigation; use `$expand`",
                            resource.name
                        ));
                    }
                }
            }
            indexes.sort_unstable();
            indexes.dedup();
            Some(indexes)
        }
    };
    let mut expand: Vec<Expansion> = Vec::new();
    for item in options.expand.iter().flatten() {
        let nav = navigation(resource, &item.name)?;
        let name = match member(resource, &item.name)? {
            Member::Field(index, _) => resource.fields[index].name,
            Member::Reverse(_) => resource
                .reverse
                .iter()
                .find(|r| r.name == item.name)
                .map(|r| r.name)
                .unwrap_or_default(),
        };
        if expand.iter().any(|e| e.name == name) {
            return Err(format!("`{name}` is expanded more than once"));
        }
        if item.count {
            let o = &item.options;
            if o.select.is_some()
                || o.expand.is_some()
                || o.orderby.is_some()
                || o.top.is_some()
                || o.skip.is_some()
            {
                return Err(format!("`{name}/$count` takes only `$filter`"));
            }
        }
        let query = bind_query(nav.target(), &item.options)?;
        expand.push(Expansion {
            name,
            nav,
            count: item.count,
            query,
        });
    }
    let mut orderby = Vec::new();
    for item in options.orderby.iter().flatten() {
        if item.path.count.is_some() {
            return Err("ordering by `/$count` is not supported".to_owned());
        }
        let path = Scopes::root(resource).field_path(&item.path.names)?;
        if path.ty == FieldType::Json {
            return Err("cannot order by a json field".to_owned());
        }
        orderby.push((path, item.descending));
    }
    Ok(Query {
        resource,
        filter,
        select,
        expand,
        orderby,
        top: options.top,
        skip: options.skip,
    })
}

/// Binds a `$filter` whose root is `resource`.
pub fn bind_filter(resource: &'static Resource, expr: &Expr) -> Result<Filter, BindError> {
    let scopes = Scopes::root(resource);
    let (expr, ty) = bind_expr(&scopes, expr)?;
    if ty != Ty::Bool && ty != Ty::Null {
        return Err(format!(
            "`$filter` must be a condition, not a {}",
            ty_name(ty)
        ));
    }
    Ok(Filter { expr })
}

fn bind_expr<'n>(scopes: &Scopes<'n>, expr: &'n Expr) -> Result<(BExpr, Ty), BindError> {
    Ok(match expr {
        Expr::Literal(literal) => bind_literal(literal)?,
        Expr::Path(PropertyPath { names, count: None }) => {
            let path = scopes.field_path(names)?;
            let ty = ty_of(path.ty);
            (BExpr::Field(path), ty)
        }
        Expr::Path(PropertyPath {
            names,
            count: Some(filter),
        }) => {
            let path = scopes.nav_path(names)?;
            let filter = match filter {
                Some(filter) => Some(Box::new(bind_filter(path.last.target(), filter)?.expr)),
                None => None,
            };
            (BExpr::Count { path, filter }, Ty::Number)
        }
        Expr::Lambda {
            names,
            kind,
            variable,
            body,
        } => {
            let path = scopes.nav_path(names)?;
            let mut inner = Scopes {
                stack: scopes.stack.clone(),
            };
            inner
                .stack
                .push((Some(variable.as_str()), path.last.target()));
            let scope = inner.stack.len() - 1;
            let (body, ty) = bind_expr(&inner, body)?;
            if ty != Ty::Bool && ty != Ty::Null {
                return Err(format!("the body of `{variable}` must be a condition"));
            }
            (
                BExpr::Lambda {
                    path,
                    all: *kind == LambdaKind::All,
                    variable: scope,
                    body: Box::new(body),
                },
                Ty::Bool,
            )
        }
        Expr::Not(inner) => {
            let (inner, ty) = bind_expr(scopes, inner)?;
            expect_bool(ty, "not")?;
            (BExpr::Not(Box::new(inner)), Ty::Bool)
        }
        Expr::Binary(op, lhs, rhs) => {
            let (l, lt) = bind_expr(scopes, lhs)?;
            let (r, rt) = bind_expr(scopes, rhs)?;
            let cmp = match op {
                Operator::And | Operator::Or => {
                    expect_bool(lt, op.keyword())?;
                    expect_bool(rt, op.keyword())?;
                    let (l, r) = (Box::new(l), Box::new(r));
                    let expr = if *op == Operator::And {
                        BExpr::And(l, r)
                    } else {
                        BExpr::Or(l, r)
                    };
                    return Ok((expr, Ty::Bool));
                }
                Operator::Eq => Cmp::Eq,
                Operator::Ne => Cmp::Ne,
                Operator::Gt => Cmp::Gt,
                Operator::Ge => Cmp::Ge,
                Operator::Lt => Cmp::Lt,
                Operator::Le => Cmp::Le,
                Operator::Add | Operator::Sub | Operator::Mul | Operator::Div | Operator::Mod => {
                    return Err(format!("the operator `{}` is not supported", op.keyword()));
                }
            };
            let (l, r) = comparable(l, lt, r, rt, op.keyword())?;
            (BExpr::Compare(cmp, Box::new(l), Box::new(r)), Ty::Bool)
        }
        Expr::In(lhs, list) => {
            let (mut l, mut lt) = bind_expr(scopes, lhs)?;
            let mut values = Vec::new();
            for item in list {
                let (v, vt) = bind_expr(scopes, item)?;
                let (nl, nv) = comparable(l, lt, v, vt, "in")?;
                l = nl;
                if lt == Ty::Null {
                    lt = vt;
                }
                values.push(nv);
            }
            (BExpr::In(Box::new(l), values), Ty::Bool)
        }
        Expr::Call(name, args) => bind_call(scopes, name, args)?,
    })
}

fn expect_bool(ty: Ty, what: &str) -> Result<(), BindError> {
    if ty == Ty::Bool || ty == Ty::Null {
        Ok(())
    } else {
        Err(format!("`{what}` needs conditions, not a {}", ty_name(ty)))
    }
}

fn bind_literal(literal: &Literal) -> Result<(BExpr, Ty), BindError> {
    Ok(match literal {
        Literal::Null => (BExpr::Null, Ty::Null),
        Literal::Boolean(b) => (BExpr::Bool(*b), Ty::Bool),
        Literal::Integer(n) => (BExpr::Number(i128::from(*n)), Ty::Number),
        Literal::Decimal(text) => match text.parse::<i128>() {
            Ok(n) => (BExpr::Number(n), Ty::Number),
            Err(_) => {
                return Err(format!(
                    "the number `{text}` is not supported, only integers"
                ));
            }
        },
        Literal::Text(text) => (BExpr::Text(text.clone()), Ty::Text),
        Literal::DateTime(at) => (BExpr::Date(*at), Ty::Date),
    })
}

/// Checks that two operands can be compared; a Big Integer field also
/// accepts a string literal holding a number.
fn comparable(l: BExpr, lt: Ty, r: BExpr, rt: Ty, op: &str) -> Result<(BExpr, BExpr), BindError> {
    fn big_text(field: &BExpr, other: BExpr) -> Result<BExpr, BExpr> {
        match (field, other) {
            (
                BExpr::Field(FieldPath {
                    ty: FieldType::BigInteger,
                    ..
                }),
                BExpr::Text(text),
            ) => match text.parse::<u64>() {
                Ok(n) => Ok(BExpr::Number(i128::from(n))),
                Err(_) => Err(BExpr::Text(text)),
            },
            (_, other) => Err(other),
        }
    }
    if lt == Ty::Json || rt == Ty::Json {
        return Err(format!("json fields cannot be compared with `{op}`"));
    }
    if lt == rt || lt == Ty::Null || rt == Ty::Null {
        return Ok((l, r));
    }
    let r = match big_text(&l, r) {
        Ok(r) => return Ok((l, r)),
        Err(r) => r,
    };
    let l = match big_text(&r, l) {
        Ok(l) => return Ok((l, r)),
        Err(l) => l,
    };
    let _ = (l, r);
    Err(format!(
        "cannot compare a {} with a {} using `{op}`",
        ty_name(lt),
        ty_name(rt)
    ))
}

fn bind_call<'n>(
    scopes: &Scopes<'n>,
    name: &str,
    args: &'n [Expr],
) -> Result<(BExpr, Ty), BindError> {
    let (func, result) = match name {
        "startswith" => (Func::StartsWith, Ty::Bool),
        "endswith" => (Func::EndsWith, Ty::Bool),
        "contains" | "substringof" => (Func::Contains, Ty::Bool),
        "tolower" => (Func::ToLower, Ty::Text),
        "toupper" => (Func::ToUpper, Ty::Text),
        "trim" => (Func::Trim, Ty::Text),
        "length" => (Func::Length, Ty::Number),
        "indexof" => (Func::IndexOf, Ty::Number),
        "concat" => (Func::Concat, Ty::Text),
        _ => return Err(format!("the method `{name}` is not supported")),
    };
    let mut bound = Vec::with_capacity(args.len());
    for arg in args {
        let (arg, ty) = bind_expr(scopes, arg)?;
        if ty != Ty::Text && ty != Ty::Null {
            return Err(format!(
                "`{name}` needs text arguments, not a {}",
                ty_name(ty)
            ));
        }
        bound.push(arg);
    }
    if name == "substringof" {
        // substringof(needle, haystack) is contains(haystack, needle).
        bound.reverse();
    }
    Ok((BExpr::Call(func, bound), result))
}

/// A runtime value.
#[derive(Debug, Clone, PartialEq)]
enum V<'a> {
    Null,
    Bool(bool),
    Number(i128),
    Text(Cow<'a, str>),
    Date(Timestamp),
    Json,
}

impl V<'_> {
    fn from_value(value: &Value) -> V<'_> {
        match value {
            Value::Null => V::Null,
            Value::Integer(n) => V::Number(i128::from(*n)),
            Value::BigInteger(n) => V::Number(i128::from(*n)),
            Value::Text(text) => V::Text(Cow::Borrowed(text)),
            Value::DateTime(at) => V::Date(*at),
            Value::Boolean(b) => V::Bool(*b),
            Value::Json(_) => V::Json,
        }
    }

    /// Ordering of two non-null values of one type (the binder checked the types).
    fn order(&self, other: &V<'_>) -> Option<Ordering> {
        match (self, other) {
            (V::Bool(a), V::Bool(b)) => Some(a.cmp(b)),
            (V::Number(a), V::Number(b)) => Some(a.cmp(b)),
            (V::Text(a), V::Text(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (V::Date(a), V::Date(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// The rows in scope while evaluating: the filtered row, then lambda variables.
type Env<'d> = Vec<&'d Row>;

fn follow<'d>(
    db: &'d Db,
    mut row: &'d Row,
    hops: &[(usize, &'static Resource)],
) -> Option<&'d Row> {
    for (field, target) in hops {
        let Value::Integer(id) = row.values[*field] else {
            return None;
        };
        row = db.row(target.name, id)?;
    }
    Some(row)
}

/// The rows a navigation leads to from `row`, in id order.
pub fn navigate<'d>(
    db: &'d Db,
    row: &'d Row,
    nav: Nav,
) -> Box<dyn Iterator<Item = (i64, &'d Row)> + 'd> {
    match nav {
        Nav::Forward { field, target } => {
            let found = match row.values[field] {
                Value::Integer(id) => db.row(target.name, id).map(|row| (id, row)),
                _ => None,
            };
            Box::new(found.into_iter())
        }
        Nav::Reverse { target, via } => {
            let Value::Integer(id) = row.values[0] else {
                return Box::new(std::iter::empty());
            };
            Box::new(db.referencing_at(target.name, via, id))
        }
    }
}

fn nav_rows<'d>(
    db: &'d Db,
    env: &[&'d Row],
    path: &NavPath,
) -> Box<dyn Iterator<Item = (i64, &'d Row)> + 'd> {
    match follow(db, env[path.scope], &path.hops) {
        Some(row) => navigate(db, row, path.last),
        None => Box::new(std::iter::empty()),
    }
}

fn field_value<'d>(db: &'d Db, env: &Env<'d>, path: &FieldPath) -> V<'d> {
    match follow(db, env[path.scope], &path.hops) {
        Some(row) => V::from_value(&row.values[path.field]),
        None => V::Null,
    }
}

/// Whether `row` passes `filter` (SQL `WHERE`: only a definite true passes).
pub fn matches(db: &Db, filter: &Filter, row: &Row) -> bool {
    let mut env = vec![row];
    truth(db, &mut env, &filter.expr) == Some(true)
}

fn truth<'d>(db: &'d Db, env: &mut Env<'d>, expr: &BExpr) -> Option<bool> {
    match value(db, env, expr) {
        V::Bool(b) => Some(b),
        _ => None,
    }
}

fn value<'d, 'e>(db: &'d Db, env: &mut Env<'d>, expr: &'e BExpr) -> V<'e>
where
    'd: 'e,
{
    let b = |x: Option<bool>| x.map_or(V::Null, V::Bool);
    match expr {
        BExpr::Null => V::Null,
        BExpr::Bool(x) => V::Bool(*x),
        BExpr::Number(n) => V::Number(*n),
        BExpr::Text(text) => V::Text(Cow::Borrowed(text)),
        BExpr::Date(at) => V::Date(*at),
        BExpr::Field(path) => field_value(db, env, path),
        BExpr::Not(inner) => b(truth(db, env, inner).map(|x| !x)),
        BExpr::And(l, r) => b(match (truth(db, env, l), truth(db, env, r)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }),
        BExpr::Or(l, r) => b(match (truth(db, env, l), truth(db, env, r)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }),
        BExpr::Compare(cmp, l, r) => {
            let l = value(db, env, l);
            let r = value(db, env, r);
            b(compare(*cmp, &l, &r))
        }
        BExpr::In(l, list) => {
            let l = value(db, env, l);
            if l == V::Null {
                return V::Bool(false);
            }
            let mut found = false;
            for item in list {
                let item = value(db, env, item);
                if l.order(&item) == Some(Ordering::Equal) {
                    found = true;
                    break;
                }
            }
            V::Bool(found)
        }
        BExpr::Lambda {
            path, all, body, ..
        } => {
            let mut result = *all;
            for (_, row) in nav_rows(db, env, path) {
                env.push(row);
                let outcome = truth(db, env, body);
                env.pop();
                if *all && outcome == Some(false) {
                    result = false;
                    break;
                }
                if !*all && outcome == Some(true) {
                    result = true;
                    break;
                }
            }
            V::Bool(result)
        }
        BExpr::Count { path, filter } => {
            let rows = nav_rows(db, env, path);
            let count = match filter {
                None => rows.count(),
                Some(filter) => rows
                    .filter(|(_, row)| {
                        let mut inner = vec![*row];
                        truth(db, &mut inner, filter) == Some(true)
                    })
                    .count(),
            };
            V::Number(count as i128)
        }
        BExpr::Call(func, args) => {
            let args: Vec<V<'e>> = args.iter().map(|arg| value(db, env, arg)).collect();
            call(*func, args)
        }
    }
}

/// `eq`/`ne` never yield null (`IS [NOT] DISTINCT FROM`); order comparisons with a null do.
fn compare(cmp: Cmp, l: &V<'_>, r: &V<'_>) -> Option<bool> {
    let both_null = *l == V::Null && *r == V::Null;
    let any_null = *l == V::Null || *r == V::Null;
    match cmp {
        Cmp::Eq if any_null => Some(both_null),
        Cmp::Ne if any_null => Some(!both_null),
        _ if any_null => None,
        _ => {
            let ordering = l.order(r)?;
            Some(match cmp {
                Cmp::Eq => ordering == Ordering::Equal,
                Cmp::Ne => ordering != Ordering::Equal,
                Cmp::Gt => ordering == Ordering::Greater,
                Cmp::Ge => ordering != Ordering::Less,
                Cmp::Lt => ordering == Ordering::Less,
                Cmp::Le => ordering != Ordering::Greater,
            })
        }
    }
}

fn call<'e>(func: Func, args: Vec<V<'e>>) -> V<'e> {
    let mut texts = Vec::with_capacity(args.len());
    for arg in args {
        match arg {
            V::Text(text) => texts.push(text),
            _ => return V::Null,
        }
    }
    let first = texts.first().map(|t| t.as_ref()).unwrap_or_default();
    let second = texts.get(1).map(|t| t.as_ref()).unwrap_or_default();
    match func {
        Func::StartsWith => V::Bool(first.starts_with(second)),
        Func::EndsWith => V::Bool(first.ends_with(second)),
        Func::Contains => V::Bool(first.contains(second)),
        Func::ToLower => V::Text(Cow::Owned(first.to_lowercase())),
        Func::ToUpper => V::Text(Cow::Owned(first.to_uppercase())),
        Func::Trim => V::Text(Cow::Owned(first.trim().to_owned())),
        Func::Length => V::Number(first.chars().count() as i128),
        Func::IndexOf => V::Number(match first.find(second) {
            Some(byte) => first[..byte].chars().count() as i128,
            None => -1,
        }),
        Func::Concat => V::Text(Cow::Owned(format!("{first}{second}"))),
    }
}

/// Sorts rows by `$orderby` (nulls sort as the largest value, as in
/// PostgreSQL), keeping id order between equal keys.
fn sort_rows<'d>(db: &'d Db, rows: &mut [(i64, &'d Row)], orderby: &[(FieldPath, bool)]) {
    if orderby.is_empty() {
        return;
    }
    let mut keyed: Vec<(Vec<V<'d>>, (i64, &'d Row))> = rows
        .iter()
        .map(|(id, row)| {
            let env = vec![*row];
            let keys = orderby
                .iter()
                .map(|(path, _)| field_value(db, &env, path))
                .collect();
            (keys, (*id, *row))
        })
        .collect();
    keyed.sort_by(|(a, (ida, _)), (b, (idb, _))| {
        for ((ka, kb), (_, descending)) in a.iter().zip(b).zip(orderby) {
            let ordering = match (ka, kb) {
                (V::Null, V::Null) => Ordering::Equal,
                (V::Null, _) => Ordering::Greater,
                (_, V::Null) => Ordering::Less,
                _ => ka.order(kb).unwrap_or(Ordering::Equal),
            };
            let ordering = if *descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        ida.cmp(idb)
    });
    for (slot, (_, row)) in rows.iter_mut().zip(keyed) {
        *slot = row;
    }
}

/// Applies `$orderby`, `$skip` and `$top` to filtered rows.
pub fn page<'d>(db: &'d Db, query: &Query, mut rows: Vec<(i64, &'d Row)>) -> Vec<(i64, &'d Row)> {
    sort_rows(db, &mut rows, &query.orderby);
    let skip = usize::try_from(query.skip.unwrap_or(0)).unwrap_or(usize::MAX);
    let top = usize::try_from(query.top.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    rows.into_iter().skip(skip).take(top).collect()
}

/// Formats a timestamp the way pinejs does: UTC with exactly three fraction digits.
pub fn format_date(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn to_json(value: &Value, ty: FieldType, version: ApiVersion) -> Json {
    match (value, ty) {
        (Value::Null, _) => Json::Null,
        (Value::Integer(id), FieldType::ForeignKey(_)) => {
            let mut object = Map::new();
            object.insert("__id".to_owned(), Json::from(*id));
            Json::Object(object)
        }
        (Value::Integer(n), _) => Json::from(*n),
        (Value::BigInteger(n), _) => match version {
            ApiVersion::V7 => Json::String(n.to_string()),
            ApiVersion::V6 => Json::from(*n),
        },
        (Value::Text(text), _) => Json::String(text.clone()),
        (Value::DateTime(at), _) => Json::String(format_date(*at)),
        (Value::Boolean(b), _) => Json::Bool(*b),
        (Value::Json(json), _) => json.clone(),
    }
}

/// Serialises one row with its selected fields and expansions.
pub fn serialize(db: &Db, query: &Query, row: &Row, version: ApiVersion) -> Json {
    let mut object = Map::new();
    let fields = query.resource.fields;
    let put = |index: usize, object: &mut Map<String, Json>| {
        let field = &fields[index];
        if query.expand.iter().any(|e| e.name == field.name) {
            return;
        }
        object.insert(
            field.name.to_owned(),
            to_json(&row.values[index], field.ty, version),
        );
    };
    match &query.select {
        Some(indexes) => indexes.iter().for_each(|index| put(*index, &mut object)),
        None => (0..fields.len()).for_each(|index| put(index, &mut object)),
    }
    for expansion in &query.expand {
        let rows =
            navigate(db, row, expansion.nav).filter(|(_, row)| match &expansion.query.filter {
                Some(filter) => matches(db, filter, row),
                None => true,
            });
        let json = if expansion.count {
            Json::from(rows.count())
        } else {
            let rows = page(db, &expansion.query, rows.collect());
            Json::Array(
                rows.into_iter()
                    .map(|(_, row)| serialize(db, &expansion.query, row, version))
                    .collect(),
            )
        };
        object.insert(expansion.name.to_owned(), json);
    }
    Json::Object(object)
}

/// The rows that can match `filter`, found through the id and foreign-key
/// indexes, or `None` when the filter gives no handle (then every row is a candidate).
pub fn candidates<'d>(
    db: &'d Db,
    resource: &'static Resource,
    filter: &Filter,
) -> Option<Vec<(i64, &'d Row)>> {
    let ids = plan(db, resource, 0, &filter.expr)?;
    Some(
        ids.into_iter()
            .filter_map(|id| db.row(resource.name, id).map(|row| (id, row)))
            .collect(),
    )
}

type Ids = BTreeSet<i64>;

/// A superset of the ids of `resource` rows (the rows of scope `scope`) for
/// which `expr` can be true, when the indexes can tell.
fn plan(db: &Db, resource: &'static Resource, scope: usize, expr: &BExpr) -> Option<Ids> {
    match expr {
        BExpr::And(l, r) => match (plan(db, resource, scope, l), plan(db, resource, scope, r)) {
            (Some(a), Some(b)) => Some(a.intersection(&b).copied().collect()),
            (Some(a), None) | (None, Some(a)) => Some(a),
            (None, None) => None,
        },
        BExpr::Or(l, r) => {
            let mut a = plan(db, resource, scope, l)?;
            a.extend(plan(db, resource, scope, r)?);
            Some(a)
        }
        BExpr::Compare(Cmp::Eq, l, r) => {
            let (path, n) = match (&**l, &**r) {
                (BExpr::Field(path), BExpr::Number(n)) | (BExpr::Number(n), BExpr::Field(path)) => {
                    (path, *n)
                }
                _ => return None,
            };
            if path.scope != scope {
                return None;
            }
            let end = path.hops.last().map_or(resource, |(_, target)| *target);
            let Ok(n) = i64::try_from(n) else {
                return Some(Ids::new());
            };
            let ids: Ids = if path.field == 0 {
                db.row(end.name, n).map(|_| n).into_iter().collect()
            } else if matches!(path.ty, FieldType::ForeignKey(_)) {
                db.referencing_at(end.name, path.field, n)
                    .map(|(id, _)| id)
                    .collect()
            } else {
                return None;
            };
            Some(back_through(db, resource, &path.hops, ids))
        }
        BExpr::In(l, list) => {
            let BExpr::Field(path) = &**l else {
                return None;
            };
            if path.scope != scope || !path.hops.is_empty() || path.field != 0 {
                return None;
            }
            let mut ids = Ids::new();
            for item in list {
                match item {
                    BExpr::Number(n) => ids.extend(i64::try_from(*n).ok()),
                    BExpr::Null => {}
                    _ => return None,
                }
            }
            Some(ids)
        }
        BExpr::Lambda {
            path,
            all: false,
            variable,
            body,
        } if path.scope == scope => {
            let target = path.last.target();
            let matched = plan(db, target, *variable, body)?;
            let end = path.hops.last().map_or(resource, |(_, target)| *target);
            let mut ids = Ids::new();
            for id in matched {
                match path.last {
                    Nav::Reverse { via, .. } => {
                        if let Some(Value::Integer(parent)) =
                            db.row(target.name, id).map(|row| &row.values[via])
                        {
                            ids.insert(*parent);
                        }
                    }
                    Nav::Forward { field, .. } => {
                        ids.extend(db.referencing_at(end.name, field, id).map(|(id, _)| id));
                    }
                }
            }
            Some(back_through(db, resource, &path.hops, ids))
        }
        _ => None,
    }
}

/// Maps ids at the end of foreign-key `hops` back to the ids of `resource` rows.
fn back_through(db: &Db, resource: &'static Resource, hops: &Hops, mut ids: Ids) -> Ids {
    for index in (0..hops.len()).rev() {
        let holder = if index == 0 {
            resource
        } else {
            hops[index - 1].1
        };
        let field = hops[index].0;
        ids = ids
            .iter()
            .flat_map(|target| {
                db.referencing_at(holder.name, field, *target)
                    .map(|(id, _)| id)
            })
            .collect();
    }
    ids
}
