//! Evaluates bound queries (`bind.rs`) over the in-memory tables with SQL
//! semantics: three-valued logic, `eq`/`ne` as `IS [NOT] DISTINCT FROM`, nulls
//! sorting last ascending; then pages and serialises rows the way pinejs does,
//! and plans filters through the reference indexes.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Map, Value as Json};

use super::ApiVersion;
use super::bind::*;
use crate::db::{Db, FieldType, Resource, Row, Value};

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
