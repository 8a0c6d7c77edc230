//! The tables a scenario starts with: one function per resource turns the
//! scenario's rows into database rows, filling in what a file leaves out
//! (timestamps from the epoch, slugs, locations, hashes, compositions).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::db::{Db, Model, SchemaError, Value};
use crate::registry::Content;
use crate::spec::{
    Scenario, ScenarioError, default_content_hash, default_image_location, delta_location, plus,
};

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

fn opt_text(v: &Option<String>) -> Value {
    v.clone().map(Value::Text).unwrap_or(Value::Null)
}

fn opt_id(v: Option<i64>) -> Value {
    v.map(Value::Integer).unwrap_or(Value::Null)
}

fn opt_big(v: Option<u64>) -> Value {
    v.map(Value::BigInteger).unwrap_or(Value::Null)
}

/// `Value::DateTime(t)` when `done`, else `Null`.
fn when(done: bool, t: Timestamp) -> Value {
    if done {
        Value::DateTime(t)
    } else {
        Value::Null
    }
}

/// The database being filled from one scenario.
struct Tables<'s> {
    scenario: &'s Scenario,
    registry: &'s Content,
    db: Db,
}

impl Scenario {
    /// The tables this scenario starts with.
    #[cfg(test)]
    pub(crate) fn build_db(&self) -> Result<Db, ScenarioError> {
        self.build().map(|(db, _)| db)
    }

    /// The tables and the registry content this scenario starts with.
    pub(crate) fn build(&self) -> Result<(Db, Content), ScenarioError> {
        self.validate()?;
        let registry = Content::from_scenario(self)?;
        let model = if self.openbalena {
            Model::OpenBalena
        } else {
            Model::BalenaCloud
        };
        let mut tables = Tables {
            scenario: self,
            registry: &registry,
            db: Db::with_model(model),
        };
        tables
            .users()
            .and_then(|()| tables.applications())
            .and_then(|()| tables.services())
            .and_then(|()| tables.images())
            .and_then(|()| tables.releases())
            .and_then(|()| tables.devices())
            .and_then(|()| tables.deltas())
            .and_then(|()| tables.config_variables())
            .map_err(|e| ScenarioError(e.to_string()))?;
        let db = tables.db;
        Ok((db, registry))
    }
}

impl Tables<'_> {
    /// The given `created_at`, else row `index` of its list: epoch + index hours.
    fn at(&self, given: Option<Timestamp>, index: usize) -> Timestamp {
        given.unwrap_or_else(|| {
            plus(
                self.scenario.epoch,
                SignedDuration::from_hours(index as i64),
            )
        })
    }

    fn insert(&mut self, resource: &str, fields: &[(&str, Value)]) -> Result<(), SchemaError> {
        self.db.insert(resource, fields).map(|_| ())
    }

    fn users(&mut self) -> Result<(), SchemaError> {
        for (i, u) in self.scenario.users.iter().enumerate() {
            let created = self.at(u.created_at, i);
            self.insert(
                "user",
                &[
                    ("id", Value::Integer(u.id)),
                    ("created_at", Value::DateTime(created)),
                    ("username", Value::Text(u.username.clone())),
                ],
            )?;
        }
        Ok(())
    }

    fn applications(&mut self) -> Result<(), SchemaError> {
        let owner = self
            .scenario
            .users
            .first()
            .map_or("admin", |u| u.username.as_str());
        for (i, a) in self.scenario.applications.iter().enumerate() {
            let slug = a
                .slug
                .clone()
                .unwrap_or_else(|| format!("{owner}/{}", a.app_name.to_lowercase()));
            let created = self.at(a.created_at, i);
            self.insert(
                "application",
                &[
                    ("id", Value::Integer(a.id)),
                    ("created_at", Value::DateTime(created)),
                    ("app_name", Value::Text(a.app_name.clone())),
                    ("slug", Value::Text(slug)),
                    ("is_public", Value::Boolean(a.is_public)),
                    ("is_host", Value::Boolean(false)),
                    (
                        "should_track_latest_release",
                        Value::Boolean(a.should_track_latest_release),
                    ),
                    (
                        "should_be_running__release",
                        opt_id(a.should_be_running__release),
                    ),
                ],
            )?;
        }
        Ok(())
    }

    fn services(&mut self) -> Result<(), SchemaError> {
        for (i, s) in self.scenario.services.iter().enumerate() {
            let created = self.at(s.created_at, i);
            self.insert(
                "service",
                &[
                    ("id", Value::Integer(s.id)),
                    ("created_at", Value::DateTime(created)),
                    ("application", Value::Integer(s.application)),
                    ("service_name", Value::Text(s.service_name.clone())),
                ],
            )?;
        }
        Ok(())
    }

    fn images(&mut self) -> Result<(), SchemaError> {
        for (i, im) in self.scenario.images.iter().enumerate() {
            let created = self.at(im.created_at, i);
            let location = im
                .is_stored_at__image_location
                .clone()
                .unwrap_or_else(|| default_image_location(im.id));
            let hash = match self.registry.image(im.id) {
                Some(entry) => entry.content_hash.clone(),
                None => im
                    .content_hash
                    .clone()
                    .unwrap_or_else(|| default_content_hash(im.id)),
            };
            let done = im.status != "running";
            let pushed = when(done, plus(created, minutes(3)));
            self.insert(
                "image",
                &[
                    ("id", Value::Integer(im.id)),
                    ("created_at", Value::DateTime(created)),
                    ("content_hash", Value::Text(hash)),
                    (
                        "project_type",
                        Value::Text("Standard Dockerfile".to_owned()),
                    ),
                    ("status", Value::Text(im.status.clone())),
                    ("is_stored_at__image_location", Value::Text(location)),
                    ("start_timestamp", Value::DateTime(created)),
                    ("end_timestamp", pushed.clone()),
                    ("push_timestamp", pushed),
                    ("image_size", opt_big(im.image_size)),
                    (
                        "is_a_build_of__service",
                        Value::Integer(im.is_a_build_of__service),
                    ),
                ],
            )?;
        }
        Ok(())
    }

    /// Releases, each with one `release_image` row per image.
    fn releases(&mut self) -> Result<(), SchemaError> {
        let scenario = self.scenario;
        let service_name: BTreeMap<i64, &str> = scenario
            .services
            .iter()
            .map(|s| (s.id, s.service_name.as_str()))
            .collect();
        let image_service: BTreeMap<i64, i64> = scenario
            .images
            .iter()
            .map(|i| (i.id, i.is_a_build_of__service))
            .collect();
        let mut release_image_id = 0;
        for (i, r) in scenario.releases.iter().enumerate() {
            let created = self.at(r.created_at, i);
            let done = r.status != "running";
            let end = when(done, plus(created, minutes(4)));
            let semver = r.semver.clone().unwrap_or_else(|| "0.0.0".to_owned());
            let parts: Vec<i64> = semver
                .split(['.', '-', '+'])
                .take(3)
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            let part = |n: usize| Value::Integer(parts.get(n).copied().unwrap_or(0));
            let mut services = serde_json::Map::new();
            for image in &r.images {
                let name = service_name[&image_service[image]];
                services.insert(
                    name.to_owned(),
                    serde_json::json!({ "build": { "context": format!("./{name}") } }),
                );
            }
            let success = r.status == "success";
            self.insert(
                "release",
                &[
                    ("id", Value::Integer(r.id)),
                    ("created_at", Value::DateTime(created)),
                    (
                        "belongs_to__application",
                        Value::Integer(r.belongs_to__application),
                    ),
                    ("is_created_by__user", opt_id(r.is_created_by__user)),
                    ("commit", Value::Text(r.commit.clone())),
                    (
                        "composition",
                        Value::Json(r.composition.clone().unwrap_or_else(
                            || serde_json::json!({ "version": "2.1", "services": services }),
                        )),
                    ),
                    ("status", Value::Text(r.status.clone())),
                    ("source", Value::Text("cloud".to_owned())),
                    ("is_invalidated", Value::Boolean(false)),
                    ("start_timestamp", Value::DateTime(created)),
                    (
                        "update_timestamp",
                        if done {
                            end.clone()
                        } else {
                            Value::DateTime(created)
                        },
                    ),
                    ("end_timestamp", end.clone()),
                    ("semver", Value::Text(semver.clone())),
                    ("semver_major", part(0)),
                    ("semver_minor", part(1)),
                    ("semver_patch", part(2)),
                    ("semver_prerelease", Value::Text(String::new())),
                    ("semver_build", Value::Text(String::new())),
                    ("variant", Value::Text(String::new())),
                    (
                        "revision",
                        if success {
                            Value::Integer(0)
                        } else {
                            Value::Null
                        },
                    ),
                    (
                        "raw_version",
                        Value::Text(if success {
                            semver
                        } else {
                            format!("0.0.0-{}", r.id)
                        }),
                    ),
                    ("is_final", Value::Boolean(r.is_final)),
                    (
                        "is_finalized_at__date",
                        if r.is_final && done { end } else { Value::Null },
                    ),
                ],
            )?;
            for image in &r.images {
                release_image_id += 1;
                self.insert(
                    "release_image",
                    &[
                        ("id", Value::Integer(release_image_id)),
                        ("created_at", Value::DateTime(plus(created, minutes(4)))),
                        ("image", Value::Integer(*image)),
                        ("is_part_of__release", Value::Integer(r.id)),
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn devices(&mut self) -> Result<(), SchemaError> {
        for (i, d) in self.scenario.devices.iter().enumerate() {
            let created = self.at(d.created_at, i);
            let uuid = d
                .uuid
                .clone()
                .unwrap_or_else(|| crate::rng::hex_of(d.id as u64 ^ 0xdec1ce, 32));
            let name = d
                .device_name
                .clone()
                .unwrap_or_else(|| format!("device-{}", d.id));
            self.insert(
                "device",
                &[
                    ("id", Value::Integer(d.id)),
                    ("created_at", Value::DateTime(created)),
                    ("uuid", Value::Text(uuid)),
                    ("device_name", Value::Text(name)),
                    (
                        "belongs_to__application",
                        Value::Integer(d.belongs_to__application),
                    ),
                    ("is_running__release", opt_id(d.is_running__release)),
                    ("is_pinned_on__release", opt_id(d.is_pinned_on__release)),
                    ("is_online", Value::Boolean(d.is_online)),
                    (
                        "api_heartbeat_state",
                        Value::Text(if d.is_online { "online" } else { "offline" }.to_owned()),
                    ),
                ],
            )?;
        }
        Ok(())
    }

    /// `application_config_variable` and `device_config_variable` rows, ids
    /// counted from 1 in each.
    fn config_variables(&mut self) -> Result<(), SchemaError> {
        let scenario = self.scenario;
        let fleets = scenario
            .applications
            .iter()
            .flat_map(|a| a.config_variables.iter().map(move |v| (a.id, v)));
        for (n, (application, (name, value))) in fleets.enumerate() {
            self.insert(
                "application_config_variable",
                &[
                    ("id", Value::Integer(n as i64 + 1)),
                    ("created_at", Value::DateTime(scenario.epoch)),
                    ("application", Value::Integer(application)),
                    ("name", Value::Text(name.clone())),
                    ("value", Value::Text(value.clone())),
                ],
            )?;
        }
        let devices = scenario
            .devices
            .iter()
            .flat_map(|d| d.config_variables.iter().map(move |v| (d.id, v)));
        for (n, (device, (name, value))) in devices.enumerate() {
            self.insert(
                "device_config_variable",
                &[
                    ("id", Value::Integer(n as i64 + 1)),
                    ("created_at", Value::DateTime(scenario.epoch)),
                    ("device", Value::Integer(device)),
                    ("name", Value::Text(name.clone())),
                    ("value", Value::Text(value.clone())),
                ],
            )?;
        }
        Ok(())
    }

    fn deltas(&mut self) -> Result<(), SchemaError> {
        let image_location: BTreeMap<i64, String> = self
            .scenario
            .images
            .iter()
            .map(|im| {
                let location = im
                    .is_stored_at__image_location
                    .clone()
                    .unwrap_or_else(|| default_image_location(im.id));
                (im.id, location)
            })
            .collect();
        for (i, d) in self.scenario.deltas.iter().enumerate() {
            let created = self.at(d.created_at, i);
            let done = d.status != "running";
            let location = match (&d.is_stored_at__location, d.status.as_str()) {
                (Some(l), _) => Value::Text(l.clone()),
                (None, "success") => Value::Text(delta_location(
                    &image_location[&d.produces__image],
                    d.id,
                    d.originates_from__image.unwrap_or(0),
                    d.produces__image,
                )),
                _ => Value::Null,
            };
            let end = plus(created, minutes(2));
            self.insert(
                "delta",
                &[
                    ("id", Value::Integer(d.id)),
                    ("created_at", Value::DateTime(created)),
                    ("originates_from__image", opt_id(d.originates_from__image)),
                    ("produces__image", Value::Integer(d.produces__image)),
                    ("version", Value::Integer(d.version)),
                    ("status", Value::Text(d.status.clone())),
                    ("is_stored_at__location", location),
                    ("size", opt_big(d.size)),
                    ("start_timestamp", Value::DateTime(created)),
                    (
                        "update_timestamp",
                        Value::DateTime(if done { end } else { created }),
                    ),
                    ("end_timestamp", when(done, end)),
                    ("error_message", opt_text(&d.error_message)),
                ],
            )?;
        }
        Ok(())
    }
}
