//! The simulator's in-memory tables: typed rows of the balena model subset,
//! with the schema the OData engine needs to check field names, follow
//! foreign keys and reverse navigations, and serialise rows the way pinejs does.
//!
//! Everything else (scenarios, the delta server) changes state only through
//! this API, so the OData engine sees one consistent model.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;

pub use crate::schema::{
    Field, FieldType, Model, Resource, ReverseNavigation, SchemaError, field_index,
    resource_schema, schema,
};

/// A stored value. Foreign keys are stored as `Integer` ids (or `Null`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    /// pinejs "Big Integer": a JSON string in v7, a number in v6.
    BigInteger(u64),
    Text(String),
    DateTime(Timestamp),
    Boolean(bool),
    Json(serde_json::Value),
}

/// One row: values in the order of its resource's `fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub values: Vec<Value>,
}

/// For one foreign-key column: target id → ids of the rows pointing at it.
type ReferenceIndex = HashMap<i64, BTreeSet<i64>>;

/// All tables, keyed by resource name, each ordered by id.
#[derive(Debug, Default, Clone)]
pub struct Db {
    tables: BTreeMap<&'static str, BTreeMap<i64, Row>>,
    /// Reverse-navigation indexes: per resource, one per field position
    /// (empty for fields that are not foreign keys), kept up to date by
    /// `insert` and `update`.
    references: BTreeMap<&'static str, Vec<ReferenceIndex>>,
    /// The API these tables are served as.
    model: Model,
}

impl Db {
    /// An empty database with every resource of [`schema`].
    pub fn new() -> Db {
        let mut db = Db::default();
        for resource in schema() {
            db.tables.insert(resource.name, BTreeMap::new());
        }
        db
    }

    /// An empty database served as `model`.
    pub fn with_model(model: Model) -> Db {
        Db { model, ..Db::new() }
    }

    /// The API these tables are served as.
    pub fn model(&self) -> Model {
        self.model
    }

    /// Inserts a row. `id` must be given and unused; unnamed fields are `Null`.
    pub fn insert(&mut self, resource: &str, fields: &[(&str, Value)]) -> Result<i64, SchemaError> {
        refuse_computed(resource, fields)?;
        let id = self.insert_row(resource, fields)?;
        self.recompute(resource, id, fields);
        Ok(id)
    }

    fn insert_row(&mut self, resource: &str, fields: &[(&str, Value)]) -> Result<i64, SchemaError> {
        let schema = resource_schema(resource)?;
        let mut values = vec![Value::Null; schema.fields.len()];
        for (name, value) in fields {
            values[field_index(schema, name)?] = value.clone();
        }
        let Value::Integer(id) = values[0] else {
            return Err(SchemaError(format!(
                "{resource}: a row needs an integer `id`"
            )));
        };
        if self.row(schema.name, id).is_some() {
            return Err(SchemaError(format!("{resource}({id}) already exists")));
        }
        let references = self.references_mut(schema);
        for (index, value) in values.iter().enumerate() {
            if let (Value::Integer(target), FieldType::ForeignKey(_)) =
                (value, schema.fields[index].ty)
            {
                references[index].entry(*target).or_default().insert(id);
            }
        }
        self.tables
            .entry(schema.name)
            .or_default()
            .insert(id, Row { values });
        Ok(id)
    }

    /// Sets some fields of an existing row.
    pub fn update(
        &mut self,
        resource: &str,
        id: i64,
        fields: &[(&str, Value)],
    ) -> Result<(), SchemaError> {
        refuse_computed(resource, fields)?;
        self.update_row(resource, id, fields)?;
        self.recompute(resource, id, fields);
        Ok(())
    }

    /// Keeps `device.should_be_running__release` (pin ?? fleet target) right
    /// after a write to `resource(id)` that set `fields`.
    fn recompute(&mut self, resource: &str, id: i64, fields: &[(&str, Value)]) {
        let touches = |names: &[&str]| fields.iter().any(|(name, _)| names.contains(name));
        match resource {
            "device" if touches(&["is_pinned_on__release", "belongs_to__application", "id"]) => {
                self.recompute_device(id);
            }
            "application" if touches(&["should_be_running__release", "id"]) => {
                let devices: Vec<i64> = self
                    .referencing("device", "belongs_to__application", id)
                    .map(|(device, _)| device)
                    .collect();
                for device in devices {
                    self.recompute_device(device);
                }
            }
            _ => {}
        }
    }

    fn recompute_device(&mut self, id: i64) {
        let target = match self.get("device", id, "is_pinned_on__release") {
            Some(Value::Integer(pin)) => Value::Integer(*pin),
            _ => match self.get("device", id, "belongs_to__application") {
                Some(Value::Integer(app)) => self
                    .get("application", *app, "should_be_running__release")
                    .cloned()
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            },
        };
        if self.get("device", id, COMPUTED_TARGET.1) != Some(&target) {
            // The device exists and the field is in the schema.
            let _ = self.update_row("device", id, &[(COMPUTED_TARGET.1, target)]);
        }
    }

    fn update_row(
        &mut self,
        resource: &str,
        id: i64,
        fields: &[(&str, Value)],
    ) -> Result<(), SchemaError> {
        let schema = resource_schema(resource)?;
        let indexes = fields
            .iter()
            .map(|(name, _)| field_index(schema, name))
            .collect::<Result<Vec<_>, _>>()?;
        let row = self
            .tables
            .get_mut(schema.name)
            .and_then(|table| table.get_mut(&id))
            .ok_or_else(|| SchemaError(format!("{resource}({id}) does not exist")))?;
        let mut moved = Vec::new();
        for (index, (_, value)) in indexes.into_iter().zip(fields) {
            let field = &schema.fields[index];
            if matches!(field.ty, FieldType::ForeignKey(_)) && row.values[index] != *value {
                moved.push((index, row.values[index].clone(), value.clone()));
            }
            row.values[index] = value.clone();
        }
        let references = self.references_mut(schema);
        for (index, old, new) in moved {
            if let Value::Integer(target) = old
                && let Some(ids) = references[index].get_mut(&target)
            {
                ids.remove(&id);
                if ids.is_empty() {
                    references[index].remove(&target);
                }
            }
            if let Value::Integer(target) = new {
                references[index].entry(target).or_default().insert(id);
            }
        }
        Ok(())
    }

    fn references_mut(&mut self, schema: &'static Resource) -> &mut Vec<ReferenceIndex> {
        self.references
            .entry(schema.name)
            .or_insert_with(|| vec![ReferenceIndex::default(); schema.fields.len()])
    }

    /// The rows of `resource` whose foreign key `via` is `target`, in id order
    /// (a reverse navigation, answered from an index).
    pub fn referencing<'a>(
        &'a self,
        resource: &str,
        via: &str,
        target: i64,
    ) -> impl Iterator<Item = (i64, &'a Row)> + 'a {
        let position = resource_schema(resource)
            .and_then(|schema| field_index(schema, via))
            .unwrap_or(usize::MAX);
        self.referencing_at(resource, position, target)
    }

    /// [`Db::referencing`] with the foreign key given by its field position.
    pub fn referencing_at<'a>(
        &'a self,
        resource: &str,
        field: usize,
        target: i64,
    ) -> impl Iterator<Item = (i64, &'a Row)> + 'a {
        let table = self.tables.get(resource);
        let ids = self
            .references
            .get(resource)
            .and_then(|indexes| indexes.get(field))
            .and_then(|index| index.get(&target));
        ids.into_iter()
            .flatten()
            .filter_map(move |id| Some((*id, table?.get(id)?)))
    }

    /// The number of rows of a resource.
    pub fn count(&self, resource: &str) -> usize {
        self.tables.get(resource).map_or(0, BTreeMap::len)
    }

    /// One row by id.
    pub fn row(&self, resource: &str, id: i64) -> Option<&Row> {
        self.tables.get(resource)?.get(&id)
    }

    /// Every row of a resource, in id order.
    pub fn rows(&self, resource: &str) -> impl Iterator<Item = (i64, &Row)> {
        self.tables
            .get(resource)
            .into_iter()
            .flat_map(|table| table.iter().map(|(id, row)| (*id, row)))
    }

    /// One field of one row (`None` when the row or field does not exist).
    pub fn get(&self, resource: &str, id: i64, field: &str) -> Option<&Value> {
        let schema = resource_schema(resource).ok()?;
        let index = field_index(schema, field).ok()?;
        self.row(resource, id).map(|row| &row.values[index])
    }

    /// The largest id in use for a resource (0 when empty).
    pub fn max_id(&self, resource: &str) -> i64 {
        self.tables
            .get(resource)
            .and_then(|table| table.keys().next_back().copied())
            .unwrap_or(0)
    }
}

/// The field the API computes: a device's own target, its pin or else its
/// fleet's target (`device is pinned on release ?? application should be
/// running release`). Writes go to the fields it is computed from.
const COMPUTED_TARGET: (&str, &str) = ("device", "should_be_running__release");

fn refuse_computed(resource: &str, fields: &[(&str, Value)]) -> Result<(), SchemaError> {
    if resource == COMPUTED_TARGET.0 && fields.iter().any(|(name, _)| *name == COMPUTED_TARGET.1) {
        return Err(SchemaError(format!(
            "{resource}.{} is computed (pin ?? fleet target): set `is_pinned_on__release` or the application's `should_be_running__release`",
            COMPUTED_TARGET.1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_update_and_read_back() {
        let mut db = Db::new();
        db.insert(
            "user",
            &[
                ("id", Value::Integer(7)),
                ("username", Value::Text("ana".into())),
            ],
        )
        .unwrap();
        db.update("user", 7, &[("username", Value::Text("bea".into()))])
            .unwrap();
        assert_eq!(
            db.get("user", 7, "username"),
            Some(&Value::Text("bea".into()))
        );
        assert_eq!(db.get("user", 7, "created_at"), Some(&Value::Null));
        assert_eq!(db.max_id("user"), 7);
    }

    #[test]
    fn reverse_navigation_index_follows_foreign_key_updates() {
        let mut db = Db::new();
        for id in [1, 2] {
            db.insert("release", &[("id", Value::Integer(id))]).unwrap();
        }
        for (id, release) in [(10, 1), (11, 1), (12, 2)] {
            let fields = [
                ("id", Value::Integer(id)),
                ("is_part_of__release", Value::Integer(release)),
            ];
            db.insert("release_image", &fields).unwrap();
        }
        let linked = |db: &Db, release| {
            db.referencing("release_image", "is_part_of__release", release)
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        };
        assert_eq!(linked(&db, 1), [10, 11]);
        db.update(
            "release_image",
            10,
            &[("is_part_of__release", Value::Integer(2))],
        )
        .unwrap();
        assert_eq!(linked(&db, 1), [11]);
        assert_eq!(linked(&db, 2), [10, 12]);
        db.update("release_image", 12, &[("is_part_of__release", Value::Null)])
            .unwrap();
        assert_eq!(linked(&db, 2), [10]);
        assert_eq!(linked(&db, 3), Vec::<i64>::new());
        assert_eq!(db.referencing("release_image", "nope", 1).count(), 0);
        assert_eq!(db.count("release_image"), 3);
    }

    #[test]
    fn a_devices_target_is_its_pin_or_else_its_fleets() {
        let mut db = Db::new();
        let int = Value::Integer;
        for id in [1, 2, 3] {
            db.insert("release", &[("id", int(id))]).unwrap();
        }
        db.insert(
            "application",
            &[("id", int(10)), ("should_be_running__release", int(1))],
        )
        .unwrap();
        for (id, pin) in [(100, Value::Null), (101, int(2))] {
            db.insert(
                "device",
                &[
                    ("id", int(id)),
                    ("belongs_to__application", int(10)),
                    ("is_pinned_on__release", pin),
                ],
            )
            .unwrap();
        }
        let target = |db: &Db, id| db.get("device", id, "should_be_running__release").cloned();
        assert_eq!(target(&db, 100), Some(int(1)));
        assert_eq!(target(&db, 101), Some(int(2)));
        db.update("application", 10, &[("should_be_running__release", int(3))])
            .unwrap();
        assert_eq!(target(&db, 100), Some(int(3)), "follows the fleet");
        assert_eq!(target(&db, 101), Some(int(2)), "keeps its pin");
        db.update("device", 101, &[("is_pinned_on__release", Value::Null)])
            .unwrap();
        assert_eq!(target(&db, 101), Some(int(3)));
        db.update("device", 100, &[("is_pinned_on__release", int(1))])
            .unwrap();
        let pinned: Vec<i64> = db
            .referencing("device", "should_be_running__release", 1)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            pinned,
            [100],
            "the reverse index follows the computed field"
        );
        let refused = db.update("device", 100, &[("should_be_running__release", int(2))]);
        assert!(refused.unwrap_err().0.contains("computed"));
    }

    #[test]
    fn writes_outside_the_schema_are_refused() {
        let mut db = Db::new();
        assert!(db.insert("nope", &[("id", Value::Integer(1))]).is_err());
        assert!(
            db.insert("user", &[("id", Value::Integer(1)), ("nope", Value::Null)])
                .is_err()
        );
        assert!(
            db.insert("user", &[("username", Value::Text("x".into()))])
                .is_err()
        );
        db.insert("user", &[("id", Value::Integer(1))]).unwrap();
        assert!(db.insert("user", &[("id", Value::Integer(1))]).is_err());
        assert!(db.update("user", 2, &[]).is_err());
    }
}
