//! The simulated container registry: image and delta manifests and blob
//! sizes under `/v2/`, behind the distribution token flow (a 401 challenge
//! naming `<api>/auth/v1/token`, which the API answers with a registry token
//! for a balena token). Repositories are the path part of image locations;
//! the host part is ignored, so `registry2.balena-cloud.com/v2/<hash>` is
//! served as `/v2/v2/<hash>/…`.

pub(crate) mod content;
mod token;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use crate::journal::decode;
use crate::respond::{json, not_found, text, unauthorized};
use crate::state::{Ctx, read};
pub(crate) use content::Content;
use content::{DOCKER_LIST, Manifest, OCI_INDEX};
pub(crate) use token::Tokens;

/// The registry's content and the tokens it accepts.
#[derive(Debug)]
pub(crate) struct Registry {
    pub content: Content,
    pub tokens: Tokens,
}

/// What a `/v2/` path asks for.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    Base,
    Manifest { repo: &'a str, reference: &'a str },
    Blob { repo: &'a str, digest: &'a str },
}

fn route(path: &str) -> Option<Route<'_>> {
    if path == "/v2" || path == "/v2/" {
        return Some(Route::Base);
    }
    let rest = path.strip_prefix("/v2/")?;
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        return (!repo.is_empty() && !reference.is_empty() && !reference.contains('/'))
            .then_some(Route::Manifest { repo, reference });
    }
    let (repo, digest) = rest.rsplit_once("/blobs/")?;
    (!repo.is_empty() && !digest.is_empty() && !digest.contains('/'))
        .then_some(Route::Blob { repo, digest })
}

/// The journal's resource name of a registry path.
pub(crate) fn resource_of(path: &str) -> Option<String> {
    Some(
        match route(path)? {
            Route::Base => "v2",
            Route::Manifest { .. } => "manifests",
            Route::Blob { .. } => "blobs",
        }
        .to_owned(),
    )
}

fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": null }] }),
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The media types an `Accept` header lists (`None`: no header, anything goes).
fn accepted(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut types = Vec::new();
    for value in headers.get_all(header::ACCEPT) {
        for item in value.to_str().unwrap_or_default().split(',') {
            let media = item.split(';').next().unwrap_or_default().trim();
            if !media.is_empty() {
                types.push(media.to_ascii_lowercase());
            }
        }
    }
    (!types.is_empty()).then_some(types)
}

fn accepts(accepted: &Option<Vec<String>>, media_type: &str) -> bool {
    accepted
        .as_ref()
        .is_none_or(|types| types.iter().any(|t| t == media_type || t == "*/*"))
}

/// Answers one request to the registry server.
pub(crate) fn handle(ctx: &Ctx, method: &Method, headers: &HeaderMap, path: &str) -> Response {
    let Some(route) = route(path) else {
        return not_found(method, path);
    };
    let allowed: &[Method] = match route {
        Route::Blob { .. } => &[Method::HEAD],
        _ => &[Method::GET, Method::HEAD],
    };
    if !allowed.contains(method) {
        let mut r = errors(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the simulated registry serves manifests (GET, HEAD) and blob sizes (HEAD) only",
        );
        let allow = if allowed.len() == 1 {
            "HEAD"
        } else {
            "GET, HEAD"
        };
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    let shared = &ctx.shared;
    let now = shared.clock.now();
    let registry = &shared.registry;
    let repo = match route {
        Route::Base => None,
        Route::Manifest { repo, .. } | Route::Blob { repo, .. } => Some(repo),
    };
    let authorized = bearer(headers).is_some_and(|token| match repo {
        None => registry.tokens.valid(token, now),
        Some(repo) => registry.tokens.allows(token, repo, now),
    });
    if !authorized {
        return challenge(ctx, repo);
    }
    shared.refresh();
    let db = read(&shared.db);
    let content = &registry.content;
    let head = method == Method::HEAD;
    match route {
        Route::Base => json(StatusCode::OK, &serde_json::json!({})),
        Route::Manifest { repo, reference } => {
            let Some(manifest) = content.manifest(&db, repo, reference) else {
                return unknown_manifest(content.has_repository(&db, repo));
            };
            let accepted = accepted(headers);
            if accepts(&accepted, manifest.media_type) {
                return manifest_response(&manifest, reference, head);
            }
            // Like Distribution: a client that takes no lists gets the
            // linux/amd64 entry, when there is one it takes.
            let is_list = manifest.media_type == DOCKER_LIST || manifest.media_type == OCI_INDEX;
            let fallback = is_list
                .then(|| {
                    let value: serde_json::Value =
                        serde_json::from_slice(&manifest.bytes).unwrap_or_default();
                    let platforms = manifest.platforms();
                    let index = platforms.iter().position(|p| p == "linux/amd64")?;
                    let digest = value["manifests"][index]["digest"].as_str()?.to_owned();
                    content.manifest(&db, repo, &digest)
                })
                .flatten()
                .filter(|entry| accepts(&accepted, entry.media_type));
            match fallback {
                Some(entry) => {
                    let digest = entry.digest.clone();
                    manifest_response(&entry, &digest, head)
                }
                None => errors(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    &format!(
                        "manifest of type {} not accepted by the request",
                        manifest.media_type
                    ),
                ),
            }
        }
        Route::Blob { repo, digest } => match content.blob(&db, repo, digest) {
            Some(size) => {
                let mut r = Response::new(Body::empty());
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                if let Ok(value) = HeaderValue::from_str(digest) {
                    h.insert("docker-content-digest", value);
                }
                r
            }
            None => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        },
    }
}

fn unknown_manifest(repository_exists: bool) -> Response {
    if repository_exists {
        errors(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        )
    } else {
        errors(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        )
    }
}

fn manifest_response(manifest: &Manifest, reference: &str, head: bool) -> Response {
    // A manifest asked for by digest is served under that digest (a scenario
    // content hash that is not the SHA-256 of the bytes stays as it is).
    let digest = if reference.starts_with("sha256:") {
        reference
    } else {
        manifest.digest.as_str()
    };
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(manifest.bytes.to_vec())
    });
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(manifest.media_type),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(manifest.bytes.len()),
    );
    if let Ok(value) = HeaderValue::from_str(digest) {
        h.insert("docker-content-digest", value.clone());
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
            h.insert(header::ETAG, etag);
        }
    }
    r
}

/// 401 with the `WWW-Authenticate` challenge naming the API's token endpoint.
fn challenge(ctx: &Ctx, repo: Option<&str>) -> Response {
    let shared = &ctx.shared;
    let mut value = format!(
        "Bearer realm=\"{}/auth/v1/token\",service=\"{}\"",
        shared.api_url, shared.registry.content.host
    );
    if let Some(repo) = repo {
        value.push_str(&format!(",scope=\"repository:{repo}:pull\""));
    }
    let mut r = errors(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    r
}

/// `GET /auth/v1/token?service=…&scope=…[&scope=…]` on the API: a registry
/// token for a balena token.
pub(crate) fn token(ctx: &Ctx, headers: &HeaderMap, raw_query: Option<&str>) -> Response {
    let shared = &ctx.shared;
    if !shared.authorized(headers) {
        return unauthorized();
    }
    let mut service = None;
    let mut scopes = Vec::new();
    for pair in raw_query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(&value.replace('+', " "));
        match key {
            "service" => service = Some(value),
            "scope" => scopes.push(value),
            _ => {}
        }
    }
    let Some(service) = service else {
        return text(
            StatusCode::BAD_REQUEST,
            "the `service` parameter is missing".to_owned(),
        );
    };
    let now = shared.clock.now();
    let repositories = token::pull_scopes(scopes.iter().map(String::as_str));
    let issued = shared.registry.tokens.issue(&service, repositories, now);
    json(
        StatusCode::OK,
        &serde_json::json!({
            "token": issued,
            "access_token": issued,
            "expires_in": token::LIFETIME_S,
            "issued_at": now.to_string(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_of_the_distribution_api() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(
            route("/v2/v2/abc/manifests/sha256:00"),
            Some(Route::Manifest {
                repo: "v2/abc",
                reference: "sha256:00"
            })
        );
        assert_eq!(
            route("/v2/v2/abc/blobs/sha256:11"),
            Some(Route::Blob {
                repo: "v2/abc",
                digest: "sha256:11"
            })
        );
        assert_eq!(route("/v2/manifests/x"), None);
        assert_eq!(route("/v2/a/tags/list"), None);
        assert_eq!(route("/v3/a/manifests/x"), None);
        assert_eq!(resource_of("/v2/a/blobs/sha256:1"), Some("blobs".into()));
    }

    #[test]
    fn accept_lists_media_types_with_parameters() {
        let mut headers = HeaderMap::new();
        assert!(accepts(&accepted(&headers), "anything"));
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json; q=0.9"),
        );
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json, application/vnd.docker.distribution.manifest.v2+json",
            ),
        );
        let types = accepted(&headers);
        assert!(accepts(&types, content::OCI_MANIFEST));
        assert!(accepts(&types, content::DOCKER_MANIFEST));
        assert!(!accepts(&types, DOCKER_LIST));
    }
}
