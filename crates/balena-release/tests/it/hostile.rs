//! Servers that try to exhaust the machine: an endless answer, a
//! decompression bomb, an endless delta-server answer. Every answer is read
//! up to its cap (counted after decompression) and no further.

use std::io::Write as _;
use std::time::Duration;

use balena_release::{Error, Server as Side, Status};
use balena_sim::{Server, demo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The most a hostile server here sends before it gives up on its own.
const SENT_AT_MOST: usize = 256 << 20;

/// A server that answers every request with `head`, then `chunk` again and
/// again (chunked encoding) until the client hangs up or `SENT_AT_MOST`
/// bytes are out.
async fn endless_server(head: &'static str, chunk: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 8192];
                let _ = stream.read(&mut request).await;
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let framed =
                    [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                let mut sent = 0;
                while sent < SENT_AT_MOST && stream.write_all(&framed).await.is_ok() {
                    sent += chunk.len();
                }
            });
        }
    });
    format!("http://{addr}")
}

const JSON_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Transfer-Encoding: chunked\r\n\r\n";

fn client_for(api: &str, delta: &str, token: &str) -> balena_release::Client {
    balena_release::Client::builder()
        .registry(false)
        .api_url(api.parse().unwrap())
        .delta_url(delta.parse().unwrap())
        .token(Some(token.into()))
        .request_timeout(Duration::from_secs(20))
        .retry_policy(fast_retries())
        .build()
        .unwrap()
}

fn assert_too_large(error: &Error) {
    match error {
        Error::TooLarge {
            server: Side::Api,
            host,
            limit,
        } => {
            assert!(host.starts_with("127.0.0.1:"), "{host}");
            assert_eq!(*limit, 16 << 20);
            let message = error.to_string();
            assert!(message.contains("larger than 16 MiB"), "{message}");
            assert!(message.contains(host.as_str()), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_endless_api_answer_stops_at_its_cap() {
    let api = endless_server(JSON_HEAD, vec![b' '; 64 << 10]).await;
    let error = client_for(&api, &api, "an-api-key")
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert_too_large(&error);
}

#[tokio::test]
async fn a_gzip_bomb_stops_at_its_cap_after_decompression() {
    // 64 MiB of spaces inflate from about 64 KiB, sent again and again.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(b"{\"d\":[").unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&spaces).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    let api = endless_server(head, bomb).await;
    let error = client_for(&api, &api, "an-api-key")
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert_too_large(&error);
}

#[tokio::test]
async fn an_endless_delta_server_answer_is_cut_and_the_run_goes_on() {
    let sim = start(manual_demo());
    let delta = endless_server(
        "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        vec![b'x'; 64 << 10],
    )
    .await;
    let c = client_for(&sim.api_url(), &delta, &sim.token());
    let info = prepare_2_to_3(&c, &prepare(false), &|_| {})
        .await
        .expect("a long answer from the delta server is not fatal");
    assert_eq!(info.service("api").unwrap().status, Status::Pending);
    assert_eq!(
        sim.count(Server::Delta, None),
        0,
        "the delta server is not the simulator"
    );
}
