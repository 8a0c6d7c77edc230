//! Changes to a running simulator that a real fleet sees over time: a new
//! successful release built from an existing one, with new images for some
//! of its services, and a service's update strategy label. Long-running clients (the watch mode) are tested by
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

/// Sets the `io.balena.update.strategy` label of `service` in the
/// composition of `release` (created with only that service when the
/// release has none), as a `labels` map entry.
pub(crate) fn set_update_strategy(
    db: &mut Db,
    release: i64,
    service: &str,
    strategy: &str,
) -> Result<(), String> {
    let mut composition = match db.get("release", release, "composition") {
        Some(Value::Json(value)) => value.clone(),
        Some(Value::Null) | None if db.row("release", release).is_some() => {
            serde_json::json!({ "version": "2.1", "services": {} })
        }
        None => return Err(format!("no release {release}")),
        Some(other) => return Err(format!("release {release} has a composition of {other:?}")),
    };
    let entry = &mut composition["services"][service];
    if entry.is_null() {
        *entry = serde_json::json!({ "build": format!("./{service}") });
    }
    match &mut entry["labels"] {
        serde_json::Value::Array(list) => {
            let is_strategy = |l: &serde_json::Value| {
                l.as_str()
                    .is_some_and(|l| l.split('=').next().map(str::trim) == Some(STRATEGY_LABEL))
            };
            list.retain(|l| !is_strategy(l));
            list.push(format!("{STRATEGY_LABEL}={strategy}").into());
        }
        labels => {
            if !labels.is_object() {
                *labels = serde_json::json!({});
            }
            labels[STRATEGY_LABEL] = strategy.into();
        }
    }
    db.update(
        "release",
        release,
        &[("composition", Value::Json(composition))],
    )
    .map_err(|err| err.to_string())
}

const STRATEGY_LABEL: &str = "io.balena.update.strategy";

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

    #[test]
    fn a_strategy_label_replaces_the_old_one_in_either_form() {
        use crate::demo::{RELEASE_1, RELEASE_3};
        let db = &mut crate::Scenario::demo().build_db().unwrap();
        let labels = |db: &Db, release: i64, service: &str| match db.get(
            "release",
            release,
            "composition",
        ) {
            Some(Value::Json(c)) => c["services"][service]["labels"].clone(),
            other => panic!("composition {other:?}"),
        };
        // A map, as the demo writes it.
        set_update_strategy(db, RELEASE_1, "worker", "delete-then-download").unwrap();
        assert_eq!(
            labels(db, RELEASE_1, "worker"),
            serde_json::json!({ STRATEGY_LABEL: "delete-then-download" })
        );
        // A list of `key=value`: the old entry goes, the others stay.
        let mut composition = match db.get("release", RELEASE_1, "composition") {
            Some(Value::Json(c)) => c.clone(),
            _ => unreachable!(),
        };
        composition["services"]["main"]["labels"] =
            serde_json::json!(["a=b", format!("{STRATEGY_LABEL}=hand-over")]);
        db.update(
            "release",
            RELEASE_1,
            &[("composition", Value::Json(composition))],
        )
        .unwrap();
        set_update_strategy(db, RELEASE_1, "main", "kill-then-download").unwrap();
        assert_eq!(
            labels(db, RELEASE_1, "main"),
            serde_json::json!(["a=b", format!("{STRATEGY_LABEL}=kill-then-download")])
        );
        // A release without a composition gets one.
        set_update_strategy(db, RELEASE_3, "api", "hand-over").unwrap();
        assert_eq!(labels(db, RELEASE_3, "api")[STRATEGY_LABEL], "hand-over");
        assert!(set_update_strategy(db, 1, "api", "hand-over").is_err());
    }
}
