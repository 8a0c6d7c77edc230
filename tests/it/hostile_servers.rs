//! Servers that try to exhaust the machine (endless answers, decompression
//! bombs): the run ends with one error naming the host and the limit. (The
//! peak memory of such runs is measured by the benchmarks, where the
//! process is measured on its own.)

use std::io::{Read, Write};
use std::net::TcpListener;

use balena_sim::demo;

use crate::support::{World, error_line, pair, run_checked};

/// The most one hostile server here sends before giving up by itself.
const SENT_AT_MOST: usize = 256 << 20;

/// A loopback server answering every request with `head`, then `chunk`
/// again and again in chunked encoding until the client hangs up.
fn endless_server(head: &'static str, chunk: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 8192];
                let _ = stream.read(&mut request);
                let framed =
                    [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                let mut sent = 0;
                let mut ok = stream.write_all(head.as_bytes()).is_ok();
                while ok && sent < SENT_AT_MOST {
                    ok = stream.write_all(&framed).is_ok();
                    sent += chunk.len();
                }
            });
        }
    });
    url
}

fn gzip_bomb() -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(b"{\"d\":[").unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&spaces).unwrap();
    }
    encoder.finish().unwrap()
}

#[test]
fn endless_and_bomb_answers_end_with_one_error_naming_host_and_limit() {
    let world = World::demo();
    let json = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let gzip = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (what, api) in [
        ("endless", endless_server(json, vec![b' '; 64 << 10])),
        ("gzip bomb", endless_server(gzip, gzip_bomb())),
    ] {
        let run = run_checked(world.cmd().env("BALENARC_API_URL", &api).args(pair(
            demo::RELEASE_1,
            demo::RELEASE_2,
            &[],
        )));
        assert_eq!(run.code, 1, "{what}: {}", run.stderr);
        let line = error_line(&run);
        let host = api.trim_start_matches("http://");
        assert!(line.contains("larger than 16 MiB"), "{what}: {line}");
        assert!(line.contains(host), "{what}: {line}");
    }
}
