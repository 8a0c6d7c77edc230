//! The HTTP servers (API, delta server, registry) on loopback: an accept loop that can
//! drop a connection mid-request (the reset fault), and one axum handler per
//! server that applies faults, checks the token, answers, stamps the
//! simulated `Date` and writes the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower_service::Service;

use crate::delta::{Answer, DeltaError};
use crate::faults::{Server, Terminal};
use crate::journal::{JournalEntry, decode};
use crate::pine::{self, ApiVersion, PineRequest};
use crate::respond::{
    http_date, json, json_error, method_not_allowed, not_found, status_code, text, unauthorized,
};
use crate::state::{Ctx, Shared, lock, read, write};

/// Lets a handler close its own connection without answering.
#[derive(Clone)]
struct ConnKill(Arc<Notify>);

pub(crate) fn router(shared: Arc<Shared>, kind: Server) -> Router {
    Router::new()
        .fallback(entry)
        .with_state(Ctx { shared, kind })
}

/// Accepts connections until `shutdown` changes (or its sender goes away).
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            #[cfg(unix)]
            let twin = {
                use std::os::fd::AsFd;
                stream.as_fd().try_clone_to_owned().ok()
            };
            let handle = ConnKill(kill.clone());
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(handle.clone());
                    let mut router = router.clone();
                    async move { router.call(request).await }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = kill.notified() => {
                    // SO_LINGER 0 turns the close into a TCP reset.
                    #[cfg(unix)]
                    if let Some(fd) = twin
                        && let Ok(twin) = tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd))
                    {
                        let _ = twin.set_zero_linger();
                    }
                }
                _ = stop.changed() => {}
            }
        });
    }
}

async fn entry(State(ctx): State<Ctx>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().map(str::to_owned);
    let control = path == "/__sim" || path.starts_with("/__sim/");
    let server = if control { Server::Control } else { ctx.kind };
    let mut entry = JournalEntry {
        seq: 0,
        server,
        method: parts.method.to_string(),
        path: path.clone(),
        query: raw_query.as_deref().map(decode),
        status: 0,
        duration: Duration::ZERO,
        resource: resource_of(server, &path),
        faults: Vec::new(),
    };

    let mut response = if control {
        crate::control::handle(&ctx, &parts.method, &path, raw_query.as_deref(), body).await
    } else {
        let decision = read(&ctx.shared.faults).decide(server, &path, entry.query.as_deref());
        entry.faults = decision.fired;
        if let Some((application, release)) = decision.retarget {
            // A flap names rows that exist; a wrong one changes nothing.
            let _ = write(&ctx.shared.db).update(
                "application",
                application,
                &[(
                    "should_be_running__release",
                    crate::db::Value::Integer(release),
                )],
            );
        }
        if !decision.delay.is_zero() {
            tokio::time::sleep(decision.delay).await;
        }
        match decision.terminal {
            Some(Terminal::Reset) => {
                entry.duration = started.elapsed();
                ctx.shared.journal.record(entry);
                if let Some(kill) = parts.extensions.get::<ConnKill>() {
                    kill.0.notify_one();
                }
                return std::future::pending().await;
            }
            Some(Terminal::StallForever) => {
                entry.duration = started.elapsed();
                ctx.shared.journal.record(entry);
                return std::future::pending().await;
            }
            Some(Terminal::Error { status, body }) => text(status_code(status), body),
            Some(Terminal::RateLimit { retry_after }) => {
                let mut r = text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests".into());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                r
            }
            None => match ctx.kind {
                Server::Registry => {
                    crate::registry::handle(&ctx, &parts.method, &parts.headers, &path)
                }
                Server::Delta => {
                    delta(
                        &ctx,
                        &parts.method,
                        &parts.headers,
                        &path,
                        raw_query.as_deref(),
                    )
                    .await
                }
                _ => api(
                    &ctx,
                    &parts.method,
                    &parts.headers,
                    &path,
                    raw_query.as_deref(),
                ),
            },
        }
    };
    response
        .headers_mut()
        .insert(header::DATE, http_date(ctx.shared.clock.now()));
    entry.status = response.status().as_u16();
    entry.duration = started.elapsed();
    // A request that clears the journal does not leave itself behind.
    let clears = control
        && matches!(
            (parts.method.as_str(), path.as_str()),
            ("DELETE", "/__sim/journal" | "/__sim/journal/") | ("POST", "/__sim/journal/clear")
        );
    if !clears {
        ctx.shared.journal.record(entry);
    }
    response
}

/// The registry token endpoint on the API.
const TOKEN_PATH: &str = "/auth/v1/token";

/// The resource a path addresses, for the journal and counters.
fn resource_of(server: Server, path: &str) -> Option<String> {
    let name = match server {
        Server::Api if path == TOKEN_PATH => "token",
        Server::Api => {
            let rest = path
                .strip_prefix("/v7/")
                .or_else(|| path.strip_prefix("/v6/"))?;
            rest.split(['(', '/']).next().unwrap_or_default()
        }
        Server::Delta => return (path == "/api/v3/delta").then(|| "delta".to_owned()),
        Server::Registry => return crate::registry::resource_of(path),
        Server::Control => path
            .strip_prefix("/__sim")
            .unwrap_or_default()
            .trim_start_matches('/'),
    };
    let name = name.split('/').next().unwrap_or_default();
    (!name.is_empty()).then(|| name.to_owned())
}

fn api(
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    raw_query: Option<&str>,
) -> Response {
    if path == TOKEN_PATH {
        if method != Method::GET {
            return method_not_allowed(method, path);
        }
        return crate::registry::token(ctx, headers, raw_query);
    }
    let (version, rest) = if let Some(rest) = path.strip_prefix("/v7/") {
        (ApiVersion::V7, rest)
    } else if let Some(rest) = path.strip_prefix("/v6/") {
        (ApiVersion::V6, rest)
    } else {
        return not_found(method, path);
    };
    if method != Method::GET {
        return method_not_allowed(method, path);
    }
    if !ctx.shared.authorized(headers) {
        return unauthorized();
    }
    ctx.shared.refresh();
    let result = pine::get(
        &read(&ctx.shared.db),
        &PineRequest {
            version,
            path: rest,
            raw_query,
        },
    );
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => {
            let body = e.body();
            let json_body = !body.is_empty();
            let mut r = (status_code(e.status()), body).into_response();
            let headers = r.headers_mut();
            if json_body {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            } else {
                headers.remove(header::CONTENT_TYPE);
            }
            if let Ok(reason) = HeaderValue::from_str(&e.reason()) {
                headers.insert("x-balena-sim-reason", reason);
            }
            r
        }
    }
}

async fn delta(
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    raw_query: Option<&str>,
) -> Response {
    if path != "/api/v3/delta" {
        return not_found(method, path);
    }
    if method != Method::GET {
        return method_not_allowed(method, path);
    }
    if !ctx.shared.authorized(headers) {
        return unauthorized();
    }
    let shared = &ctx.shared;
    let started = Instant::now();
    loop {
        let answer = {
            let mut deltas = lock(&shared.deltas);
            deltas.request(&mut write(&shared.db), shared.clock.now(), raw_query)
        };
        match answer {
            Err(DeltaError::BadRequest(m)) => return json_error(StatusCode::BAD_REQUEST, &m),
            Err(DeltaError::UnknownImage(m)) => return json_error(StatusCode::NOT_FOUND, &m),
            Ok(Answer::Ready { name }) => {
                return json(
                    StatusCode::OK,
                    &serde_json::json!({ "success": true, "name": name }),
                );
            }
            Ok(Answer::Building { .. }) => {
                let left = shared.hold.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return json_error(
                        shared.running_status,
                        "Delta is being generated, please retry later",
                    );
                }
                tokio::time::sleep(left.min(Duration::from_millis(50))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_named_from_the_path() {
        assert_eq!(
            resource_of(Server::Api, "/v7/release(900813)"),
            Some("release".into())
        );
        assert_eq!(resource_of(Server::Api, "/v6/image"), Some("image".into()));
        assert_eq!(
            resource_of(Server::Api, "/v7/release/$count"),
            Some("release".into())
        );
        assert_eq!(resource_of(Server::Api, "/v8/release"), None);
        assert_eq!(
            resource_of(Server::Delta, "/api/v3/delta"),
            Some("delta".into())
        );
        assert_eq!(resource_of(Server::Delta, "/api/v2/delta"), None);
        assert_eq!(
            resource_of(Server::Control, "/__sim/journal"),
            Some("journal".into())
        );
        assert_eq!(
            resource_of(Server::Control, "/__sim/clock/advance"),
            Some("clock".into())
        );
    }

    #[test]
    fn dates_use_the_http_format() {
        let d = http_date("2026-11-25T18:57:48.621Z".parse().unwrap());
        assert_eq!(d, "Wed, 25 Nov 2026 18:57:48 GMT");
    }
}
