//! Changes to a running simulator that a real fleet sees over time: a new
//! successful release built from an existing one, with new images for some
//! of its services. Long-running clients (the watch mode) are tested by
//! adding a release while they run, through [`crate::Simulator::add_release`]
//! or `POST /__sim/release?from=ID&changed=a,b`.

use jiff::Timestamp;

use crate::db::{Db, Value, resource_schema};
use crate::registry::content::live_manifest;
use crate::rng::hex_of;
use crate::spec::default_image_location;

/// Adds a successful release of the same fleet as release `from`, created
/// at `now`: the same services, each with the image of `from` except the
/// services named in `changed`, which get a new image of the same size.
/// Returns the new release's id (one more than the largest).
pub(crate) fn add_release(
    db: &mut Db,
    from: i64,
    changed: &[String],
    now: Timestamp,
) -> Result<i64, String> {
    let images: Vec<i64> = db
        .referencing("release_image", "is_part_of__release", from)
        .filter_map(|(_, row)| match row.values.get(2) {
            Some(Value::Integer(image)) => Some(*image),
            _ => None,
        })
        .collect();
    if db.row("release", from).is_none() {
        return Err(format!("release {from} does not exist"));
    }
    let service_of = |db: &Db, image: i64| -> Option<String> {
        let Some(Value::Integer(service)) = db.get("image", image, "is_a_build_of__service") else {
            return None;
        };
        match db.get("service", *service, "service_name") {
            Some(Value::Text(name)) => Some(name.clone()),
            _ => None,
        }
    };
    for name in changed {
        if !images
            .iter()
            .any(|i| service_of(db, *i).as_deref() == Some(name))
        {
            return Err(format!("release {from} has no service `{name}`"));
        }
    }
    let id = db.max_id("release") + 1;
    let mut fields = copy_fields(db, "release", from)?;
    let at = Value::DateTime(now);
    set(&mut fields, "id", Value::Integer(id));
    set(&mut fields, "commit", Value::Text(hex_of(id as u64, 32)));
    set(&mut fields, "status", Value::Text("success".to_owned()));
    for field in [
        "created_at",
        "start_timestamp",
        "update_timestamp",
        "end_timestamp",
    ] {
        set(&mut fields, field, at.clone());
    }
    insert(db, "release", &fields)?;
    for image in images {
        let image = if service_of(db, image).is_some_and(|s| changed.contains(&s)) {
            let new = db.max_id("image") + 1;
            let mut fields = copy_fields(db, "image", image)?;
            set(&mut fields, "id", Value::Integer(new));
            // The registry serves its manifest (derived from the row), under
            // its real digest.
            let application = match db.get("release", from, "belongs_to__application") {
                Some(Value::Integer(app)) => *app,
                _ => 0,
            };
            let size = match db.get("image", image, "image_size") {
                Some(Value::BigInteger(size)) => Some(*size),
                _ => None,
            };
            let manifest = live_manifest(new, application, size);
            set(&mut fields, "content_hash", Value::Text(manifest.digest));
            set(
                &mut fields,
                "is_stored_at__image_location",
                Value::Text(default_image_location(new)),
            );
            for field in [
                "created_at",
                "start_timestamp",
                "end_timestamp",
                "push_timestamp",
            ] {
                set(&mut fields, field, at.clone());
            }
            insert(db, "image", &fields)?;
            new
        } else {
            image
        };
        let link = db.max_id("release_image") + 1;
        insert(
            db,
            "release_image",
            &[
                ("id", Value::Integer(link)),
                ("created_at", at.clone()),
                ("image", Value::Integer(image)),
                ("is_part_of__release", Value::Integer(id)),
            ],
        )?;
    }
    Ok(id)
}

/// The non-null fields of row `id` of `resource`, by name.
fn copy_fields(db: &Db, resource: &str, id: i64) -> Result<Vec<(&'static str, Value)>, String> {
    let schema = resource_schema(resource).map_err(|e| e.to_string())?;
    let row = db
        .row(resource, id)
        .ok_or_else(|| format!("{resource}({id}) does not exist"))?;
    Ok(schema
        .fields
        .iter()
        .zip(&row.values)
        .filter(|(_, value)| **value != Value::Null)
        .map(|(field, value)| (field.name, value.clone()))
        .collect())
}

fn set(fields: &mut Vec<(&'static str, Value)>, name: &'static str, value: Value) {
    match fields.iter_mut().find(|(n, _)| *n == name) {
        Some(field) => field.1 = value,
        None => fields.push((name, value)),
    }
}

fn insert(db: &mut Db, resource: &str, fields: &[(&str, Value)]) -> Result<(), String> {
    db.insert(resource, fields)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_release_changes_only_the_named_services() {
        let db = &mut crate::Scenario::demo().build_db().unwrap();
        let now: Timestamp = "2026-12-02T15:00:00Z".parse().unwrap();
        let images_of = |db: &Db, release: i64| -> Vec<i64> {
            let mut ids: Vec<i64> = db
                .referencing("release_image", "is_part_of__release", release)
                .filter_map(|(_, row)| match row.values[2] {
                    Value::Integer(i) => Some(i),
                    _ => None,
                })
                .collect();
            ids.sort_unstable();
            ids
        };
        let from = 900835;
        let before = images_of(db, from);
        let id = add_release(db, from, &["main".to_owned()], now).unwrap();
        assert!(id > from);
        let after = images_of(db, id);
        assert_eq!(after.len(), before.len());
        assert_eq!(after.iter().filter(|i| !before.contains(i)).count(), 1);
        assert_eq!(
            db.get("release", id, "status"),
            Some(&Value::Text("success".into()))
        );
        assert_eq!(
            db.get("release", id, "created_at"),
            Some(&Value::DateTime(now))
        );
        assert!(add_release(db, from, &["nope".to_owned()], now).is_err());
        assert!(add_release(db, 1, &[], now).is_err());
    }
}
