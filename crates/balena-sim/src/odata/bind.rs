//! Binds parsed OData options to the schema: every name is resolved to a
//! field or navigation and every comparison type-checked before any row is
//! read (what cannot be bound is untranslatable, a 500 on pinejs). The bound
//! query is what `eval.rs` runs.

use jiff::Timestamp;

use super::parser::{Expr, LambdaKind, Literal, Operator, Options, PropertyPath, Select};
use crate::db::{FieldType, Resource, field_index, resource_schema};

/// A bind-time error: why the query cannot be translated (a 500).
pub type BindError = String;

/// Options bound to one resource, ready to run.
#[derive(Debug)]
pub struct Query {
    pub resource: &'static Resource,
    pub filter: Option<Filter>,
    /// Selected field indexes in schema order; `None` for all.
    pub(super) select: Option<Vec<usize>>,
    pub(super) expand: Vec<Expansion>,
    pub(super) orderby: Vec<(FieldPath, bool)>,
    pub(super) top: Option<u64>,
    pub(super) skip: Option<u64>,
}

/// A bound `$filter`, with the resources of its lambda scopes.
#[derive(Debug)]
pub struct Filter {
    pub expr: BExpr,
}

#[derive(Debug)]
pub(super) struct Expansion {
    pub(super) name: &'static str,
    pub(super) nav: Nav,
    pub(super) count: bool,
    pub(super) query: Query,
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
    pub(super) fn target(self) -> &'static Resource {
        match self {
            Nav::Forward { target, .. } | Nav::Reverse { target, .. } => target,
        }
    }
}

/// A scalar reached from a scope through single-valued foreign keys.
#[derive(Debug, Clone)]
pub struct FieldPath {
    pub(super) scope: usize,
    pub(super) hops: Hops,
    pub field: usize,
    pub ty: FieldType,
}

/// Single-valued foreign-key steps: (field index, target resource).
pub(super) type Hops = Vec<(usize, &'static Resource)>;

/// A collection reached from a scope: foreign-key hops, then a navigation.
#[derive(Debug, Clone)]
pub struct NavPath {
    pub(super) scope: usize,
    pub(super) hops: Hops,
    pub(super) last: Nav,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
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
pub(super) enum Member {
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
pub(super) struct Scopes<'n> {
    pub(super) stack: Vec<(Option<&'n str>, &'static Resource)>,
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
