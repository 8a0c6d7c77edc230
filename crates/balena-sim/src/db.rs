//! The simulator's in-memory tables: typed rows of the balena model subset,
//! with the schema the OData engine needs to check field names, follow
//! foreign keys and reverse navigations, and serialise rows the way pinejs does.
//!
//! Everything else (scenarios, the delta server) changes state only through
//! this API, so the OData engine sees one consistent model.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;

use FieldType::{BigInteger, Boolean, DateTime, ForeignKey, Integer, Json, Text};

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

/// The column types the engine distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Integer,
    BigInteger,
    Text,
    DateTime,
    Boolean,
    Json,
    /// A foreign key to the named resource.
    ForeignKey(&'static str),
}

/// A column of a resource.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
}

/// A reverse navigation: `name` on this resource lists the rows of
/// `resource` whose foreign key `via` points at this row
/// (for example `release.release_image` is `release_image.is_part_of__release`).
#[derive(Debug, Clone, Copy)]
pub struct ReverseNavigation {
    pub name: &'static str,
    pub resource: &'static str,
    pub via: &'static str,
}

/// The schema of one resource. The first field is always `id`.
#[derive(Debug)]
pub struct Resource {
    pub name: &'static str,
    pub fields: &'static [Field],
    pub reverse: &'static [ReverseNavigation],
}

/// One row: values in the order of its resource's `fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub values: Vec<Value>,
}

/// An error from a write that does not fit the schema (a programming or
/// scenario-file mistake, reported with the resource and field names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SchemaError {}

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

/// The schema of a resource by name.
pub fn resource_schema(name: &str) -> Result<&'static Resource, SchemaError> {
    schema()
        .iter()
        .find(|resource| resource.name == name)
        .ok_or_else(|| SchemaError(format!("unknown resource `{name}`")))
}

/// The position of a field in its resource's rows.
pub fn field_index(resource: &Resource, name: &str) -> Result<usize, SchemaError> {
    resource
        .fields
        .iter()
        .position(|field| field.name == name)
        .ok_or_else(|| SchemaError(format!("{}: unknown field `{name}`", resource.name)))
}

/// Which API the tables are served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Model {
    /// balenaCloud: every resource of [`schema`], `delta` included.
    #[default]
    BalenaCloud,
    /// openBalena: the same model without the `delta` resource and the
    /// navigations to it (`/v7/delta` is then an unknown resource).
    OpenBalena,
}

impl Model {
    /// The resources served under this model.
    pub fn resources(self) -> &'static [Resource] {
        match self {
            Model::BalenaCloud => schema(),
            Model::OpenBalena => OPENBALENA,
        }
    }

    /// A served resource by name.
    pub fn resource(self, name: &str) -> Option<&'static Resource> {
        self.resources()
            .iter()
            .find(|resource| resource.name == name)
    }
}

const fn f(name: &'static str, ty: FieldType) -> Field {
    Field { name, ty }
}

const fn rev(name: &'static str, resource: &'static str, via: &'static str) -> ReverseNavigation {
    ReverseNavigation {
        name,
        resource,
        via,
    }
}

const APPLICATION: Resource = Resource {
    name: "application",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("app_name", Text),
        f("slug", Text),
        f("is_public", Boolean),
        f("is_host", Boolean),
        f("should_track_latest_release", Boolean),
        f("should_be_running__release", ForeignKey("release")),
    ],
    reverse: &[
        rev("owns__release", "release", "belongs_to__application"),
        rev("service", "service", "application"),
        rev("owns__device", "device", "belongs_to__application"),
    ],
};

const USER: Resource = Resource {
    name: "user",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("username", Text),
    ],
    reverse: &[],
};

const SERVICE: Resource = Resource {
    name: "service",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("application", ForeignKey("application")),
        f("service_name", Text),
    ],
    reverse: &[rev("is_built_by__image", "image", "is_a_build_of__service")],
};

const RELEASE: Resource = Resource {
    name: "release",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("belongs_to__application", ForeignKey("application")),
        f("is_created_by__user", ForeignKey("user")),
        f("commit", Text),
        f("composition", Json),
        f("status", Text),
        f("source", Text),
        f("build_log", Text),
        f("is_invalidated", Boolean),
        f("start_timestamp", DateTime),
        f("update_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("phase", Text),
        f("semver", Text),
        f("semver_major", Integer),
        f("semver_minor", Integer),
        f("semver_patch", Integer),
        f("semver_prerelease", Text),
        f("semver_build", Text),
        f("variant", Text),
        f("revision", Integer),
        f("known_issue_list", Text),
        f("raw_version", Text),
        f("version", Json),
        f("is_final", Boolean),
        f("is_finalized_at__date", DateTime),
        f("note", Text),
        f("invalidation_reason", Text),
    ],
    reverse: &[
        rev("release_image", "release_image", "is_part_of__release"),
        rev(
            "should_be_running_on__application",
            "application",
            "should_be_running__release",
        ),
        rev("is_running_on__device", "device", "is_running__release"),
        rev("is_pinned_to__device", "device", "is_pinned_on__release"),
        rev(
            "should_be_running_on__device",
            "device",
            "should_be_running__release",
        ),
    ],
};

const IMAGE: Resource = Resource {
    name: "image",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("build_log", Text),
        f("contract", Json),
        f("content_hash", Text),
        f("project_type", Text),
        f("status", Text),
        f("is_stored_at__image_location", Text),
        f("start_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("push_timestamp", DateTime),
        f("image_size", BigInteger),
        f("dockerfile", Text),
        f("error_message", Text),
        f("is_a_build_of__service", ForeignKey("service")),
    ],
    reverse: &[
        rev("release_image", "release_image", "image"),
        rev("is_source_of__delta", "delta", "originates_from__image"),
        rev("is_produced_by__delta", "delta", "produces__image"),
    ],
};

const RELEASE_IMAGE: Resource = Resource {
    name: "release_image",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("image", ForeignKey("image")),
        f("is_part_of__release", ForeignKey("release")),
    ],
    reverse: &[],
};

const DELTA: Resource = Resource {
    name: "delta",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("originates_from__image", ForeignKey("image")),
        f("produces__image", ForeignKey("image")),
        f("version", Integer),
        f("status", Text),
        f("is_stored_at__location", Text),
        f("size", BigInteger),
        f("start_timestamp", DateTime),
        f("update_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("error_message", Text),
    ],
    reverse: &[],
};

const DEVICE: Resource = Resource {
    name: "device",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("uuid", Text),
        f("device_name", Text),
        f("belongs_to__application", ForeignKey("application")),
        f("is_running__release", ForeignKey("release")),
        f("is_pinned_on__release", ForeignKey("release")),
        f("should_be_running__release", ForeignKey("release")),
        f("is_online", Boolean),
        f("api_heartbeat_state", Text),
    ],
    reverse: &[],
};

/// `image` on openBalena: no navigations to `delta`.
const IMAGE_WITHOUT_DELTA: Resource = Resource {
    name: "image",
    fields: &[
        f("id", Integer),
        f("created_at", DateTime),
        f("build_log", Text),
        f("contract", Json),
        f("content_hash", Text),
        f("project_type", Text),
        f("status", Text),
        f("is_stored_at__image_location", Text),
        f("start_timestamp", DateTime),
        f("end_timestamp", DateTime),
        f("push_timestamp", DateTime),
        f("image_size", BigInteger),
        f("dockerfile", Text),
        f("error_message", Text),
        f("is_a_build_of__service", ForeignKey("service")),
    ],
    reverse: &[rev("release_image", "release_image", "image")],
};

/// The balena model subset the simulator stores (v7 field names).
pub fn schema() -> &'static [Resource] {
    static SCHEMA: &[Resource] = &[
        APPLICATION,
        USER,
        SERVICE,
        RELEASE,
        IMAGE,
        RELEASE_IMAGE,
        DELTA,
        DEVICE,
    ];
    SCHEMA
}

static OPENBALENA: &[Resource] = &[
    APPLICATION,
    USER,
    SERVICE,
    RELEASE,
    IMAGE_WITHOUT_DELTA,
    RELEASE_IMAGE,
    DEVICE,
];

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
