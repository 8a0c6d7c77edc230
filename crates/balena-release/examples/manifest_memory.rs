//! Memory under hostile manifests: one describe whose 1,000 images each have
//! a manifest just under the 1 MiB cap (padded, every one valid and served
//! under its real digest by a registry in this process), read by one client.
//! Prints the peak resident memory and fails above 100 MiB. With
//! `--cli PATH`, also runs the command under `ulimit -v 1048576` (1 GiB of
//! address space) against the same servers with `--max-download`: it must
//! answer 3 (over) and 0 (within), never abort.
//!
//! ```text
//! cargo run -p balena-release --example manifest_memory -- [--cli target/debug/balena-release-update]
//! ```
//!
//! Linux only (`/proc`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;

use balena_release::{Client, ReleaseRef};
use balena_sim::canned::{Answer, Canned};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Images: two releases of 500 services each, every image its own manifest.
const SERVICES: usize = 500;
/// Each manifest's length: just under the client's 1 MiB cap.
const LENGTH: usize = (1 << 20) - 64;
/// What each image's layers add up to.
const LAYER_BYTES: u64 = 3 * 1000;
const TOKEN: &str = "memory-test-token-0123456789";
const LIMIT_MIB: u64 = 100;

/// Manifest `n`: a Docker schema 2 image of three layers, padded to
/// [`LENGTH`] bytes by an annotation. Written as (head, padding, tail) so
/// that it is hashed and served without ever being held whole.
fn pieces(n: usize) -> (String, usize, &'static str) {
    let blob = |what: &str| format!("sha256:{:064x}", (n as u128) << 8 | what.len() as u128);
    let layers: Vec<String> = ["a", "bb", "ccc"]
        .iter()
        .map(|w| {
            format!(
                r#"{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":1000,"digest":"{}"}}"#,
                blob(w)
            )
        })
        .collect();
    let head = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":500,"digest":"{}"}},"layers":[{}],"annotations":{{"pad":""#,
        blob("config"),
        layers.join(",")
    );
    let tail = "\"}}";
    let padding = LENGTH - head.len() - tail.len();
    (head, padding, tail)
}

fn digest(n: usize) -> String {
    let (head, padding, tail) = pieces(n);
    let mut hash = Sha256::new();
    hash.update(head.as_bytes());
    let chunk = [b'x'; 64 << 10];
    let mut left = padding;
    while left > 0 {
        let take = left.min(chunk.len());
        hash.update(&chunk[..take]);
        left -= take;
    }
    hash.update(tail.as_bytes());
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An open registry on loopback serving manifest `n` at `/v2/v2/r<n>/manifests/…`.
async fn registry() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buf[..read]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let target = text.split(' ').nth(1).unwrap_or("");
                let n = target
                    .strip_prefix("/v2/v2/r")
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|n| n.parse::<usize>().ok());
                let Some(n) = n else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                };
                let (head, padding, tail) = pieces(n);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.v2+json\r\nContent-Length: {LENGTH}\r\nConnection: close\r\n\r\n{head}"
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = [b'x'; 64 << 10];
                let mut left = padding;
                while left > 0 {
                    let take = left.min(chunk.len());
                    if stream.write_all(&chunk[..take]).await.is_err() {
                        return;
                    }
                    left -= take;
                }
                let _ = stream.write_all(tail.as_bytes()).await;
            });
        }
    });
    Ok(address)
}

/// The API's answers: release 1 with images 0..500, release 2 with 500..1000.
fn api(digests: &[String]) -> Canned {
    let release = |id: usize| {
        let images: Vec<String> = (0..SERVICES)
            .map(|s| {
                let n = (id - 1) * SERVICES + s;
                format!(
                    r#"{{"image":[{{"id":{},"status":"success","content_hash":"{}","image_size":"5000","is_stored_at__image_location":"registry2.balena-cloud.com/v2/r{n}","is_a_build_of__service":[{{"service_name":"s{s:03}"}}]}}]}}"#,
                    n + 1,
                    digests[n]
                )
            })
            .collect();
        format!(
            r#"{{"id":{id},"commit":"{}","status":"success","belongs_to__application":{{"__id":1}},"release_image":[{}]}}"#,
            format!("{id}").repeat(32),
            images.join(",")
        )
    };
    let api = Canned::start();
    api.route(
        "/v7/release",
        Answer::json(format!(r#"{{"d":[{},{}]}}"#, release(1), release(2))),
    )
    .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
    api
}

/// Peak resident memory of this process in KiB (`VmHWM`).
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The command under a 1 GiB address-space limit, with `--max-download`.
fn run_cli(cli: &str, api: &str, registry: &str, limit: &str) -> Option<i32> {
    let home = tempfile_dir()?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" --from-release 1 --to-release 2 --max-download \"$1\" -q >/dev/null")
        .arg(cli)
        .arg(limit)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("BALENARC_API_URL", api)
        .env("BALENARC_DELTA_URL", api)
        .env("BALENA_RELEASE_UPDATE_TOKEN", TOKEN)
        .env("BALENA_RELEASE_UPDATE_REGISTRY_MAP", format!("registry2.balena-cloud.com=http://{registry}"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .current_dir(&home)
        .status()
        .ok()?;
    let _ = std::fs::remove_dir_all(&home);
    status.code()
}

fn tempfile_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("manifest-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag, path] if flag == "--cli" => match std::fs::canonicalize(path) {
            Ok(path) => Some(path.to_string_lossy().into_owned()),
            Err(err) => {
                eprintln!("{path}: {err}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: manifest_memory [--cli PATH]");
            return ExitCode::from(2);
        }
    };
    let digests: Arc<Vec<String>> = Arc::new((0..2 * SERVICES).map(digest).collect());
    let registry = match registry().await {
        Ok(address) => address,
        Err(err) => {
            eprintln!("cannot listen on loopback: {err}");
            return ExitCode::FAILURE;
        }
    };
    let api = api(&digests);
    let before = peak_kib().unwrap_or(0);
    let client = Client::builder()
        .api_url(api.url.parse().expect("a loopback URL"))
        .delta_url(api.url.parse().expect("a loopback URL"))
        .token(Some(SecretString::from(TOKEN)))
        .registry_map([(
            "registry2.balena-cloud.com".to_owned(),
            format!("http://{registry}")
                .parse()
                .expect("a loopback URL"),
        )])
        .registry_timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("the client builds");
    let started = std::time::Instant::now();
    let (from, to): (ReleaseRef, ReleaseRef) = ("1".parse().unwrap(), "2".parse().unwrap());
    let info = match client.get_update_info(&from, &to).await {
        Ok(info) => info,
        Err(err) => {
            eprintln!("the describe failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    let peak = peak_kib().unwrap_or(0);
    let read = info
        .is_produced_by__service_update
        .iter()
        .filter(|s| s.download_size.is_some())
        .count();
    let expected = SERVICES as u64 * (LAYER_BYTES + LENGTH as u64 + 500);
    println!(
        "{} manifests of {} bytes read in {:.1} s; sizes known for {read} of {SERVICES} services; \
         peak RSS {} MiB (before the describe {} MiB); limit {LIMIT_MIB} MiB",
        2 * SERVICES,
        LENGTH,
        started.elapsed().as_secs_f64(),
        peak / 1024,
        before / 1024,
    );
    let mut ok = true;
    if read != SERVICES || info.estimated_download_size != Some(expected) {
        eprintln!(
            "FAIL: expected every size known and {expected} bytes in all, got {:?}",
            info.estimated_download_size
        );
        ok = false;
    }
    if peak > LIMIT_MIB * 1024 {
        eprintln!("FAIL: peak RSS {} MiB is over {LIMIT_MIB} MiB", peak / 1024);
        ok = false;
    }
    if let Some(cli) = cli {
        let cli = cli.clone();
        let (api_url, registry) = (api.url.clone(), registry.clone());
        let codes = tokio::task::spawn_blocking(move || {
            let over = run_cli(&cli, &api_url, &registry, "1MB");
            let within = run_cli(&cli, &api_url, &registry, "10GB");
            (over, within)
        })
        .await
        .unwrap_or((None, None));
        println!(
            "the command under ulimit -v 1048576: --max-download 1MB exits {:?}, 10GB exits {:?}",
            codes.0, codes.1
        );
        if codes != (Some(3), Some(0)) {
            eprintln!("FAIL: expected exits 3 and 0");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
