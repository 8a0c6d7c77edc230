//! The engine's behaviour on a small fixture: pinejs' answers to the npm
//! tool's queries, the batched queries, encodings, errors, indexes and counts.

use super::*;
use crate::db::{Value, resource_schema};

const COMMIT_A: &str = "84d3d8f0c4b1e0f9a7d6c5b4a3928170";
const COMMIT_B: &str = "9a1b2c3d4e5f60718293a4b5c6d7e8f9";
const COMMIT_FAILED: &str = "84d3d8ffe4b1e0f9a7d6c5b4a3928171";

fn at(text: &str) -> Value {
    Value::DateTime(text.parse().expect("test timestamps are valid"))
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn int(n: i64) -> Value {
    Value::Integer(n)
}

/// Two successful releases of one app (services `main` and `worker`), a
/// failed release sharing a commit prefix, and deltas between their images.
fn fixture() -> Db {
    let mut db = Db::new();
    let ok = |r: Result<i64, crate::db::SchemaError>| r.expect("fixture rows fit the schema");
    ok(db.insert("application", &[("id", int(1)), ("slug", text("org/app"))]));
    ok(db.insert("user", &[("id", int(5)), ("username", text("ana"))]));
    for (id, name) in [(10, "main"), (11, "worker")] {
        ok(db.insert(
            "service",
            &[
                ("id", int(id)),
                ("application", int(1)),
                ("service_name", text(name)),
            ],
        ));
    }
    for (id, commit, status, user) in [
        (900813, COMMIT_A, "success", int(5)),
        (900835, COMMIT_B, "success", Value::Null),
        (900850, COMMIT_FAILED, "failed", int(5)),
    ] {
        ok(db.insert(
            "release",
            &[
                ("id", int(id)),
                ("created_at", at("2025-11-11T16:52:58.089Z")),
                ("belongs_to__application", int(1)),
                ("is_created_by__user", user),
                ("commit", text(commit)),
                ("status", text(status)),
                ("is_final", Value::Boolean(true)),
                (
                    "composition",
                    Value::Json(serde_json::json!({"services": {}})),
                ),
            ],
        ));
    }
    for (id, service, release, status, size) in [
        (1115249, 10, 900813, "success", Some(310905195)),
        (1115250, 11, 900813, "success", Some(1000)),
        (1115290, 10, 900835, "success", Some(310905300)),
        (1115291, 11, 900835, "success", None),
        (1115300, 10, 900850, "failed", None),
    ] {
        ok(db.insert(
            "image",
            &[
                ("id", int(id)),
                ("status", text(status)),
                ("is_a_build_of__service", int(service)),
                ("content_hash", text(&format!("sha256:{id:064}"))),
                ("image_size", size.map_or(Value::Null, Value::BigInteger)),
                (
                    "is_stored_at__image_location",
                    text(&format!("registry2.balena-cloud.com/v2/{id}")),
                ),
            ],
        ));
        ok(db.insert(
            "release_image",
            &[
                ("id", int(id - 1_000_000)),
                ("image", int(id)),
                ("is_part_of__release", int(release)),
            ],
        ));
    }
    for (id, version, source, dest, status, updated, size) in [
        (
            1,
            3,
            int(1115249),
            1115290,
            "success",
            "2026-11-25T18:00:00.000Z",
            Some(1234),
        ),
        (
            2,
            3,
            int(1115249),
            1115290,
            "running",
            "2026-11-25T18:50:00.000Z",
            None,
        ),
        (
            3,
            3,
            int(1115250),
            1115291,
            "running",
            "2026-11-25T18:59:00.000Z",
            None,
        ),
        (
            4,
            2,
            int(1115249),
            1115290,
            "success",
            "2026-11-25T18:00:00.000Z",
            Some(99),
        ),
        (
            5,
            3,
            Value::Null,
            1115290,
            "success",
            "2026-11-25T18:00:00.000Z",
            Some(7),
        ),
        (
            6,
            3,
            int(1115300),
            1115291,
            "success",
            "2026-11-25T18:00:00.000Z",
            Some(8),
        ),
    ] {
        ok(db.insert(
            "delta",
            &[
                ("id", int(id)),
                ("version", int(version)),
                ("originates_from__image", source),
                ("produces__image", int(dest)),
                ("status", text(status)),
                ("update_timestamp", at(updated)),
                ("size", size.map_or(Value::Null, Value::BigInteger)),
                (
                    "is_stored_at__location",
                    if status == "success" {
                        text(&format!("registry2.balena-cloud.com/v2/x:delta-{id:016}"))
                    } else {
                        Value::Null
                    },
                ),
            ],
        ));
    }
    db
}

/// Sends a URL such as `/v7/release?$top=1` (path and query taken verbatim).
fn request(db: &Db, url: &str) -> Result<Json, PineError> {
    let (version, rest) = if let Some(rest) = url.strip_prefix("/v7/") {
        (ApiVersion::V7, rest)
    } else if let Some(rest) = url.strip_prefix("/v6/") {
        (ApiVersion::V6, rest)
    } else {
        panic!("test urls start with /v7/ or /v6/: {url}");
    };
    let (path, raw_query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    answer(
        db,
        &PineRequest {
            version,
            path,
            raw_query,
        },
    )
}

fn rows(db: &Db, url: &str) -> Vec<Json> {
    match request(db, url) {
        Ok(Json::Object(mut body)) => match body.remove("d") {
            Some(Json::Array(rows)) => rows,
            other => panic!("{url}: `d` is not an array: {other:?}"),
        },
        other => panic!("{url}: {other:?}"),
    }
}

fn ids(db: &Db, url: &str) -> Vec<i64> {
    rows(db, url)
        .iter()
        .map(|row| {
            row["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{url}: row without id: {row}"))
        })
        .collect()
}

fn status(db: &Db, url: &str) -> u16 {
    match request(db, url) {
        Ok(body) => panic!("{url}: expected an error, got {body}"),
        Err(error) => error.status(),
    }
}

fn is_malformed(db: &Db, url: &str) -> bool {
    matches!(request(db, url), Err(PineError::Malformed(ref u)) if u == url)
}

fn is_untranslatable(db: &Db, url: &str) -> bool {
    matches!(request(db, url), Err(PineError::Untranslatable(_)))
}

#[test]
fn npm_release_by_id_both_forms() {
    let db = fixture();
    for url in [
        "/v7/release(900813)?$expand=release_image($expand=image($select=id;$expand=is_a_build_of__service($select=service_name))),is_created_by__user($select=id,username)&$filter=status eq 'success'",
        "/v7/release(900813)?$expand=release_image($expand=image($select=id;$expand=is_a_build_of__service($select=service_name))),is_created_by__user($select=id,username)&$filter=status%20eq%20%27success%27",
    ] {
        let rows = rows(&db, url);
        assert_eq!(rows.len(), 1, "{url}");
        let release = rows[0].as_object().unwrap();
        assert_eq!(release["id"], 900813);
        assert_eq!(release["commit"], COMMIT_A);
        assert_eq!(
            release["belongs_to__application"],
            serde_json::json!({"__id": 1})
        );
        assert_eq!(release["created_at"], "2025-11-11T16:52:58.089Z");
        assert_eq!(release["is_invalidated"], Json::Null);
        assert_eq!(release["composition"], serde_json::json!({"services": {}}));
        assert_eq!(
            release["is_created_by__user"],
            serde_json::json!([{"id": 5, "username": "ana"}])
        );
        // Every column plus the one expanded reverse navigation.
        let columns = resource_schema("release").unwrap().fields.len();
        assert_eq!(release.len(), columns + 1);
        let links = release["release_image"].as_array().unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0]["is_part_of__release"],
            serde_json::json!({"__id": 900813})
        );
        assert_eq!(
            links[0]["image"],
            serde_json::json!([{"id": 1115249, "is_a_build_of__service": [{"service_name": "main"}]}])
        );
        assert_eq!(
            links[1]["image"],
            serde_json::json!([{"id": 1115250, "is_a_build_of__service": [{"service_name": "worker"}]}])
        );
    }
    // The same URL for the failed release answers no rows, with 200.
    let failed = "/v7/release(900850)?$expand=release_image($expand=image($select=id;$expand=is_a_build_of__service($select=service_name))),is_created_by__user($select=id,username)&$filter=status%20eq%20%27success%27";
    assert!(rows(&db, failed).is_empty());
    assert!(rows(&db, "/v7/release(1)").is_empty());
}

#[test]
fn npm_release_by_commit_prefix_both_forms() {
    let db = fixture();
    for url in [
        "/v7/release?$filter=startswith(commit,'84d3d8f') and status eq 'success'&$expand=release_image($expand=image($select=id;$expand=is_a_build_of__service($select=service_name))),is_created_by__user($select=id,username)",
        "/v7/release?$filter=startswith(commit,%2784d3d8f%27)%20and%20status%20eq%20%27success%27&$expand=release_image($expand=image($select=id;$expand=is_a_build_of__service($select=service_name))),is_created_by__user($select=id,username)",
    ] {
        let rows = rows(&db, url);
        assert_eq!(rows.len(), 1, "{url}");
        assert_eq!(rows[0]["id"], 900813);
        assert_eq!(rows[0]["release_image"].as_array().unwrap().len(), 2);
    }
    assert_eq!(
        ids(&db, "/v7/release?$filter=startswith(commit,'84d3d8f')"),
        [900813, 900850]
    );
}

#[test]
fn npm_image_both_forms_and_versions() {
    let db = fixture();
    for url in [
        "/v7/image(1115249)?$select=id,is_stored_at__image_location,content_hash,image_size&$filter=status eq 'success'",
        "/v7/image(1115249)?$select=id,is_stored_at__image_location,content_hash,image_size&$filter=status%20eq%20%27success%27",
    ] {
        assert_eq!(
            rows(&db, url),
            [serde_json::json!({
                "id": 1115249,
                "is_stored_at__image_location": "registry2.balena-cloud.com/v2/1115249",
                "content_hash": format!("sha256:{:064}", 1115249),
                "image_size": "310905195",
            })]
        );
    }
    let v6 = rows(&db, "/v6/image(1115249)?$select=image_size");
    assert_eq!(v6, [serde_json::json!({"image_size": 310905195})]);
    let null_size = rows(&db, "/v7/image(1115291)?$select=image_size");
    assert_eq!(null_size, [serde_json::json!({"image_size": null})]);
    assert!(
        rows(
            &db,
            "/v7/image(1115300)?$select=id&$filter=status%20eq%20%27success%27"
        )
        .is_empty()
    );
}

#[test]
fn npm_delta_lookup_both_forms() {
    let db = fixture();
    let decoded = "/v7/delta?$top=1&$select=id,status,version,is_stored_at__location,size&$filter=version eq 3 and originates_from__image eq SRC and produces__image eq DST and (status eq 'success' or (status eq 'running' and update_timestamp gt datetime'2026-11-25T18:57:48.621Z'))&$orderby=id desc";
    let wire = "/v7/delta?$top=1&$select=id,status,version,is_stored_at__location,size&$filter=version%20eq%203%20and%20originates_from__image%20eq%20SRC%20and%20produces__image%20eq%20DST%20and%20(status%20eq%20%27success%27%20or%20(status%20eq%20%27running%27%20and%20update_timestamp%20gt%20datetime%272026-11-25T18:57:48.621Z%27))&$orderby=id%20desc";
    for template in [decoded, wire] {
        // The stale running row 2 is skipped: the success row 1 answers.
        let url = template.replace("SRC", "1115249").replace("DST", "1115290");
        assert_eq!(
            rows(&db, &url),
            [serde_json::json!({
                "id": 1,
                "status": "success",
                "version": 3,
                "is_stored_at__location": "registry2.balena-cloud.com/v2/x:delta-0000000000000001",
                "size": "1234",
            })]
        );
        // A fresh running row answers as running.
        let url = template.replace("SRC", "1115250").replace("DST", "1115291");
        assert_eq!(
            rows(&db, &url),
            [serde_json::json!({
                "id": 3,
                "status": "running",
                "version": 3,
                "is_stored_at__location": null,
                "size": null,
            })]
        );
        let url = template.replace("SRC", "1115291").replace("DST", "1115250");
        assert!(rows(&db, &url).is_empty());
    }
}

#[test]
fn batched_release_query() {
    let db = fixture();
    let url = "/v7/release?$filter=id in (900813,900835)&$select=id,commit,status,belongs_to__application&$expand=release_image($select=id;$expand=image($select=id,status,content_hash,image_size,is_stored_at__image_location;$expand=is_a_build_of__service($select=service_name)))";
    let rows = rows(&db, url);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1],
        serde_json::json!({
            "id": 900835,
            "commit": COMMIT_B,
            "status": "success",
            "belongs_to__application": {"__id": 1},
            "release_image": [
                {"id": 115290, "image": [{
                    "id": 1115290, "status": "success",
                    "content_hash": format!("sha256:{:064}", 1115290),
                    "image_size": "310905300",
                    "is_stored_at__image_location": "registry2.balena-cloud.com/v2/1115290",
                    "is_a_build_of__service": [{"service_name": "main"}],
                }]},
                {"id": 115291, "image": [{
                    "id": 1115291, "status": "success",
                    "content_hash": format!("sha256:{:064}", 1115291),
                    "image_size": null,
                    "is_stored_at__image_location": "registry2.balena-cloud.com/v2/1115291",
                    "is_a_build_of__service": [{"service_name": "worker"}],
                }]},
            ],
        })
    );
    assert_eq!(rows[0]["id"], 900813);
    let wire = url.replace(' ', "%20");
    assert_eq!(ids(&db, &wire), [900813, 900835]);
}

#[test]
fn batched_delta_query_through_release_membership() {
    let db = fixture();
    let select = "$select=id,status,version,is_stored_at__location,size,originates_from__image,produces__image,update_timestamp,error_message&$orderby=id desc";
    let url = format!(
        "/v7/delta?$filter=version eq 3 and originates_from__image/release_image/any(ri:ri/is_part_of__release eq 900813) and produces__image/release_image/any(ri:ri/is_part_of__release/any(r:startswith(r/commit,'9a1b2c')))&{select}"
    );
    let found = rows(&db, &url);
    assert_eq!(
        found
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert_eq!(
        found[0],
        serde_json::json!({
            "id": 3, "status": "running", "version": 3, "is_stored_at__location": null,
            "size": null, "originates_from__image": {"__id": 1115250},
            "produces__image": {"__id": 1115291},
            "update_timestamp": "2026-11-25T18:59:00.000Z", "error_message": null,
        })
    );
    // The one-query lookup with the commit prefix on the source side.
    let url = format!(
        "/v7/delta?$filter=version eq 3 and originates_from__image/release_image/any(ri:ri/is_part_of__release eq 900813) and produces__image/release_image/any(ri:ri/is_part_of__release/any(r:startswith(r/commit,'84d3d8')))&{select}"
    );
    assert!(
        rows(&db, &url).is_empty(),
        "release 900813 produces no image of a delta"
    );
    let url = "/v7/delta?$filter=version%20eq%203%20and%20produces__image/release_image/any(ri:ri/is_part_of__release/any(r:startswith(r/commit,%2784d3d8%27)))";
    assert!(ids(&db, url).is_empty());
    let url = "/v7/delta?$filter=originates_from__image/release_image/any(ri:ri/is_part_of__release/any(r:startswith(r/commit,%2784d3d8%27)))";
    assert_eq!(
        ids(&db, url),
        [1, 2, 3, 4, 6],
        "the failed release 900850 shares the prefix"
    );
    let url = "/v7/delta?$filter=originates_from__image/release_image/all(ri:ri/is_part_of__release eq 900813)";
    assert_eq!(
        ids(&db, url),
        [1, 2, 3, 4, 5],
        "`all` over an empty (null FK) collection holds"
    );
}

#[test]
fn malformed_urls() {
    let db = fixture();
    for url in [
        "/v7/release?$select=id%2Ccommit",
        "/v7/release?$filter=startswith%28commit,'84')",
        "/v7/release?$filter=startswith(commit,'84'%29",
        "/v7/release?$filter=belongs_to__application%2Fslug eq 'x'",
        "/v7/release?$expand=release_image%28$select=id)",
        "/v7/release%28900813%29",
        "/v7/release(abc)",
        "/v7/release?$bogus=1",
        "/v7/release?$top=-1",
        "/v7/release?$filter=status eq 'a' and",
        "/v7/release?$orderby=id sideways",
    ] {
        assert!(is_malformed(&db, url), "{url}: {:?}", request(&db, url));
        assert_eq!(status(&db, url), 400);
    }
    let error = request(&db, "/v7/release?$select=id%2Ccommit").unwrap_err();
    assert_eq!(
        error.body(),
        r#""Malformed url: '/v7/release?$select=id%2Ccommit'""#
    );
}

#[test]
fn unknown_names_and_wrong_types_cannot_be_translated() {
    let db = fixture();
    for url in [
        "/v7/release?$select=id,nope",
        "/v7/release?$filter=nope eq 1",
        "/v7/release?$filter=belongs_to__application/nope eq 1",
        "/v7/release?$expand=nope",
        "/v7/release?$expand=release_image($select=nope)",
        "/v7/release?$expand=release_image($expand=image($filter=nope eq 1))",
        "/v7/release?$orderby=nope desc",
        "/v7/release?$select=release_image",
        "/v7/release?$filter=status eq 1",
        "/v7/release?$filter=id eq 'x'",
        "/v7/release?$filter=created_at gt '2025-01-01'",
        "/v7/release?$filter=release_image/image eq 1",
        "/v7/release?$filter=startswith(id,'1')",
        "/v7/release?$filter=status",
        "/v7/release?$filter=composition eq null",
        "/v7/release?$filter=id add 1 eq 2",
        "/v7/image?$filter=image_size gt 'big'",
        "/v7/release?$top=1&$top=2",
        "/v7/release?$count=true",
        "/v7/release('900813')",
        "/v7/release(1)/commit",
    ] {
        assert!(
            is_untranslatable(&db, url),
            "{url}: {:?}",
            request(&db, url)
        );
    }
    let error = request(&db, "/v7/release?$select=id,nope").unwrap_err();
    assert_eq!((error.status(), error.body()), (500, String::new()));
}

#[test]
fn unknown_resources_are_unauthorized_after_the_grammar_check() {
    let db = fixture();
    for url in [
        "/v7/nope",
        "/v7/nope?$top=1",
        "/v7/nope(1)",
        "/v7/nope/$count",
        "/v7/nope?$select=whatever&$filter=x eq 1",
        "/v7/nope?$top=1&$top=2",
        "/v7/nope(1)/field",
    ] {
        let error = request(&db, url).unwrap_err();
        assert!(
            matches!(error, PineError::UnknownResource(_)),
            "{url}: {error:?}"
        );
        assert_eq!((error.status(), error.body()), (401, String::new()));
    }
    assert!(is_malformed(&db, "/v7/nope?$select=a%2Cb"));
    assert!(is_malformed(&db, "/v7/nope%28"));
}

#[test]
fn openbalena_has_no_delta_resource_nor_navigations_to_it() {
    let mut db = Db::with_model(crate::db::Model::OpenBalena);
    db.insert("image", &[("id", int(1))]).unwrap();
    let error = request(&db, "/v7/delta?$top=1").unwrap_err();
    assert_eq!(error.status(), 401);
    for url in [
        "/v7/image?$expand=is_produced_by__delta",
        "/v7/image?$filter=is_source_of__delta/any(d:d/version eq 3)",
    ] {
        assert!(
            is_untranslatable(&db, url),
            "{url}: {:?}",
            request(&db, url)
        );
    }
    assert_eq!(ids(&db, "/v7/image?$select=id"), [1]);
}

#[test]
fn encodings_of_spaces_dollars_and_literals() {
    let db = fixture();
    assert_eq!(ids(&db, "/v7/release?$filter=status+eq+'failed'"), [900850]);
    assert_eq!(
        ids(&db, "/v7/release?%24filter=status%20eq%20%27failed%27"),
        [900850]
    );
    assert_eq!(
        ids(&db, "/v7/release?$filter=status eq 'failed'&apikey=abc"),
        [900850]
    );
    let mut db = db;
    db.update("release", 900835, &[("note", text("it's a+b c"))])
        .unwrap();
    assert_eq!(
        ids(&db, "/v7/release?$filter=note eq 'it''s a%2Bb c'"),
        [900835]
    );
    assert_eq!(
        ids(&db, "/v7/release?$filter=note eq %27it%27%27s%20a%2Bb+c%27"),
        [900835]
    );
    assert!(
        ids(&db, "/v7/release?$filter=note eq 'it''s a+b c'").is_empty(),
        "a raw `+` is a space"
    );
    assert_eq!(ids(&db, "/v7/release?$filter=note ne null"), [900835]);
    assert_eq!(
        ids(&db, "/v7/release?$filter=note eq null"),
        [900813, 900850]
    );
    assert_eq!(
        ids(&db, "/v7/release?$filter=note ne 'x'"),
        [900813, 900835, 900850]
    );
    assert!(ids(&db, "/v7/release?$filter=note gt 'a' and note lt 'b'").is_empty());
    assert_eq!(
        ids(&db, "/v7/release?$filter=not (note gt 'z')"),
        [900835],
        "null stays unknown under `not`"
    );
}

#[test]
fn filters_compare_like_sql() {
    let db = fixture();
    assert_eq!(
        ids(
            &db,
            "/v7/delta?$filter=update_timestamp gt datetime'2026-11-25T18:49:59.999Z'"
        ),
        [2, 3]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/delta?$filter=update_timestamp le datetime%272026-11-25T18:50:00.000Z%27 and version eq 3"
        ),
        [1, 2, 5, 6]
    );
    assert_eq!(ids(&db, "/v7/delta?$filter=id in (6, 2,99)"), [2, 6]);
    assert_eq!(ids(&db, "/v7/delta?$filter=version in (2)"), [4]);
    assert_eq!(
        ids(&db, "/v7/delta?$filter=originates_from__image eq null"),
        [5]
    );
    assert_eq!(
        ids(&db, "/v7/delta?$filter=originates_from__image ne 1115249"),
        [3, 5, 6]
    );
    assert_eq!(
        ids(&db, "/v7/image?$filter=image_size gt 310905195"),
        [1115290]
    );
    assert_eq!(
        ids(&db, "/v7/image?$filter=image_size eq '1000'"),
        [1115250]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/image?$filter=is_a_build_of__service/service_name eq 'worker'"
        ),
        [1115250, 1115291]
    );
    assert_eq!(
        ids(&db, "/v7/release?$filter=release_image/$count eq 2"),
        [900813, 900835]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/release?$filter=release_image/$count($filter=image/image_size eq null) gt 0"
        ),
        [900835, 900850]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/release?$filter=is_final eq true and endswith(commit,'71')"
        ),
        [900850]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/release?$filter=contains(commit,'d3d8f0') or substringof('9a1b',commit)"
        ),
        [900813, 900835]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/release?$filter=tolower(toupper(status)) eq 'failed'"
        ),
        [900850]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/release?$filter=is_created_by__user/username eq 'ana'"
        ),
        [900813, 900850]
    );
}

#[test]
fn nested_expand_options_and_paging() {
    let db = fixture();
    let url = "/v7/service?$select=service_name&$expand=is_built_by__image($select=id,image_size;$filter=status eq 'success';$orderby=id desc;$top=1;$expand=release_image($select=is_part_of__release;$expand=is_part_of__release($select=commit)))&$orderby=service_name desc";
    assert_eq!(
        rows(&db, url),
        [
            serde_json::json!({"service_name": "worker", "is_built_by__image": [{
                "id": 1115291, "image_size": null,
                "release_image": [{"is_part_of__release": [{"commit": COMMIT_B}]}],
            }]}),
            serde_json::json!({"service_name": "main", "is_built_by__image": [{
                "id": 1115290, "image_size": "310905300",
                "release_image": [{"is_part_of__release": [{"commit": COMMIT_B}]}],
            }]}),
        ]
    );
    assert_eq!(
        ids(&db, "/v7/delta?$orderby=version,id asc&$skip=1&$top=3"),
        [2, 3, 5]
    );
    assert_eq!(
        ids(&db, "/v7/delta?$orderby=size desc"),
        [2, 3, 1, 4, 6, 5],
        "nulls first when descending"
    );
    assert_eq!(
        ids(
            &db,
            "/v7/delta?$orderby=produces__image/id asc,id desc&$top=2"
        ),
        [5, 4]
    );
    assert_eq!(
        ids(&db, "/v7/delta?$orderby=id"),
        [6, 5, 4, 3, 2, 1],
        "pinejs sorts `desc` by default"
    );
    assert!(ids(&db, "/v7/delta?$top=0").is_empty());
    assert!(ids(&db, "/v7/delta?$skip=6").is_empty());
}

#[test]
fn expanded_foreign_keys_are_arrays() {
    let db = fixture();
    let found = rows(
        &db,
        "/v7/release(900835)?$select=id&$expand=is_created_by__user,belongs_to__application($select=slug)",
    );
    assert_eq!(
        found,
        [
            serde_json::json!({"id": 900835, "is_created_by__user": [], "belongs_to__application": [{"slug": "org/app"}]})
        ]
    );
    let found = rows(&db, "/v7/delta(5)?$select=originates_from__image,id");
    assert_eq!(
        found,
        [serde_json::json!({"id": 5, "originates_from__image": null})]
    );
    let found = rows(
        &db,
        "/v7/release(900813)?$select=id&$expand=is_created_by__user($filter=username eq 'bob')",
    );
    assert_eq!(
        found,
        [serde_json::json!({"id": 900813, "is_created_by__user": []})]
    );
}

#[test]
fn the_longest_accepted_chain_evaluates() {
    let db = fixture();
    // 200 comparisons and 199 `and`s: just under the parser's limit.
    let chain = vec!["not (version eq 1)"; 200].join(" and ");
    assert_eq!(
        ids(&db, &format!("/v7/delta?$filter={chain}")),
        [1, 2, 3, 4, 5, 6]
    );
    let chain = vec!["(id eq 2 or id eq 3)"; 100].join(" and ");
    assert_eq!(ids(&db, &format!("/v7/delta?$filter={chain}")), [2, 3]);
    let chain = vec!["id eq 2"; 202].join(" or ");
    assert!(is_untranslatable(
        &db,
        &format!("/v7/delta?$filter={chain}")
    ));
}

#[test]
fn index_plans_agree_with_full_scans() {
    let db = fixture();
    // (resource, filter, whether the indexes must give a plan)
    let cases = [
        (
            "delta",
            "version eq 3 and originates_from__image eq 1115249",
            true,
        ),
        (
            "delta",
            "originates_from__image/id eq 1115250 or produces__image eq 1115290",
            true,
        ),
        (
            "delta",
            "originates_from__image/release_image/any(ri:ri/is_part_of__release eq 900813)",
            true,
        ),
        (
            "delta",
            "produces__image/release_image/any(ri:ri/is_part_of__release/any(r:r/id eq 900835))",
            true,
        ),
        (
            "delta",
            "produces__image/is_a_build_of__service/application eq 1 and id in (1, 6)",
            true,
        ),
        (
            "delta",
            "originates_from__image/release_image/any(ri:ri/is_part_of__release eq 1) or version eq 2",
            false,
        ),
        (
            "delta",
            "originates_from__image/release_image/all(ri:ri/is_part_of__release eq 900813)",
            false,
        ),
        ("delta", "not (originates_from__image eq 1115249)", false),
        (
            "release",
            "release_image/any(x:x/image/is_a_build_of__service eq 11) and status eq 'success'",
            true,
        ),
        ("release", "is_created_by__user/id eq 5", true),
        (
            "release",
            "is_created_by__user eq 99999999999999999999",
            true,
        ),
        (
            "image",
            "is_produced_by__delta/any(d:d/originates_from__image eq 1115249 and d/version eq 2)",
            true,
        ),
        (
            "service",
            "is_built_by__image/any(i:i/release_image/any(ri:ri/is_part_of__release eq 900850))",
            true,
        ),
    ];
    for (name, filter, indexed) in cases {
        let resource = resource_schema(name).unwrap();
        let query = format!("$filter={filter}");
        let options = parser::parse_query(&query).unwrap();
        let bound = bind::bind_query(resource, &options).unwrap();
        let bound = bound.filter.as_ref().unwrap();
        let scanned: Vec<i64> = db
            .rows(name)
            .filter(|(_, row)| eval::matches(&db, bound, row))
            .map(|(id, _)| id)
            .collect();
        let plan = eval::candidates(&db, resource, bound);
        assert_eq!(plan.is_some(), indexed, "{filter}");
        if let Some(rows) = plan {
            let planned: Vec<i64> = rows
                .into_iter()
                .filter(|(_, row)| eval::matches(&db, bound, row))
                .map(|(id, _)| id)
                .collect();
            assert_eq!(planned, scanned, "{filter}");
        }
        assert_eq!(
            ids(&db, &format!("/v7/{name}?{query}")),
            scanned,
            "{filter}"
        );
    }
}

#[test]
fn counts_in_both_forms() {
    let db = fixture();
    assert_eq!(
        request(&db, "/v7/delta/$count").unwrap(),
        serde_json::json!({"d": 6})
    );
    assert_eq!(
        request(
            &db,
            "/v7/delta/$count?$filter=version eq 3&$top=1&$orderby=id"
        )
        .unwrap(),
        serde_json::json!({"d": 5})
    );
    assert_eq!(
        request(&db, "/v7/delta(4)/$count?$filter=version eq 3").unwrap(),
        serde_json::json!({"d": 0})
    );
    assert_eq!(
        request(&db, "/v7/delta(4)/$count").unwrap(),
        serde_json::json!({"d": 1})
    );
    assert!(is_untranslatable(&db, "/v7/delta/$count?$filter=nope eq 1"));
    let found = rows(
        &db,
        "/v7/release?$select=id&$expand=release_image/$count,is_running_on__device/$count($filter=is_online eq true)",
    );
    assert_eq!(
        found[0],
        serde_json::json!({"id": 900813, "release_image": 2, "is_running_on__device": 0})
    );
    assert!(is_untranslatable(
        &db,
        "/v7/release?$expand=release_image/$count($top=1)"
    ));
}

#[test]
fn id_urls_with_filters_and_indexes_follow_updates() {
    let mut db = fixture();
    assert!(rows(&db, "/v7/release(900813)?$filter=status eq 'failed'").is_empty());
    assert_eq!(
        ids(&db, "/v7/release(900813)?$filter=status eq 'success'"),
        [900813]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/delta?$filter=produces__image eq 1115291 and version eq 3"
        ),
        [3, 6]
    );
    db.update("delta", 3, &[("produces__image", int(1115290))])
        .unwrap();
    assert_eq!(
        ids(
            &db,
            "/v7/delta?$filter=produces__image eq 1115291 and version eq 3"
        ),
        [6]
    );
    assert_eq!(
        ids(
            &db,
            "/v7/delta?$filter=version eq 3 and produces__image eq 1115290"
        ),
        [1, 2, 3, 5]
    );
    let found = rows(
        &db,
        "/v7/image(1115290)?$select=id&$expand=is_produced_by__delta/$count",
    );
    assert_eq!(
        found,
        [serde_json::json!({"id": 1115290, "is_produced_by__delta": 5})]
    );
}
