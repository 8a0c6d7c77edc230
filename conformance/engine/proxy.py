#!/usr/bin/env python3
"""The counting proxy of the engine stage: sits between the Docker engine and
the registry and records, per request, the method, the path, the status and
the number of body bytes it returned. See README.md next to this file.

Standard library only (Python 3.11).

  proxy.py UPSTREAM_URL PORT_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE once it listens) and
forwards GET and HEAD to UPSTREAM_URL (the registry), Host header unchanged,
so whatever URL the registry builds points back at the proxy. Other methods
answer 405: images are pushed to the registry directly, never through here.

Its own two paths, never forwarded:

  GET  /__proxy/records   the requests recorded since the last reset (JSON)
  POST /__proxy/reset     forget them

A record is counted (`"counted": true`) when it is a GET of
`/v2/<name>/manifests/<ref>` or `/v2/<name>/blobs/<digest>`; `/v2/` pings
and HEAD requests are recorded but not counted. The bytes of a body are
added to its record before they are written to the socket, so a client that
has received them (and a `docker pull` that has returned) finds them counted.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COUNTED = re.compile(r"^/v2/.+/(manifests|blobs)/[^/]+$")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
CHUNK = 64 * 1024


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), Handler)
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.lock = threading.Lock()
        self.records: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass

    # --- the proxy's own paths -------------------------------------------------

    def own(self) -> bool:
        if not self.path.startswith("/__proxy/"):
            return False
        if self.command == "GET" and self.path == "/__proxy/records":
            with self.server.lock:
                body = json.dumps(self.server.records).encode()
            self.reply(200, body)
        elif self.command == "POST" and self.path == "/__proxy/reset":
            with self.server.lock:
                self.server.records = []
            self.reply(200, b"{}")
        else:
            self.reply(404, b'{"error": "unknown proxy path"}')
        return True

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # --- forwarding ----------------------------------------------------------------

    def forward(self) -> None:
        if self.own():
            return
        path = urllib.parse.urlsplit(self.path).path
        record = {
            "method": self.command,
            "path": self.path,
            "status": None,
            "bytes": 0,
            "counted": self.command == "GET" and bool(COUNTED.match(path)),
        }
        with self.server.lock:
            self.server.records.append(record)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, headers=headers)
            answer = upstream.getresponse()
            record["status"] = answer.status
            length = answer.getheader("Content-Length")
            body = None
            if self.command != "HEAD" and length is None:
                body = answer.read()  # no length announced: send it with one
                length = str(len(body))
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if self.command == "HEAD":
                return
            if body is not None:
                self.send_body([body], record)
            else:
                self.send_body(iter(lambda: answer.read(CHUNK), b""), record)
        except OSError as e:
            record["error"] = str(e)
            self.close_connection = True
        finally:
            upstream.close()

    def send_body(self, chunks, record: dict) -> None:
        for chunk in chunks:
            with self.server.lock:
                record["bytes"] += len(chunk)
            try:
                self.wfile.write(chunk)
            except OSError:
                with self.server.lock:
                    record["bytes"] -= len(chunk)
                    record["aborted"] = True
                raise

    do_GET = forward
    do_HEAD = forward

    def refuse(self) -> None:
        if self.own():
            return
        with self.server.lock:
            self.server.records.append(
                {"method": self.command, "path": self.path, "status": 405, "bytes": 0, "counted": False}
            )
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.close_connection = True
        self.reply(405, b'{"error": "the counting proxy only forwards GET and HEAD"}')

    do_POST = refuse
    do_PUT = refuse
    do_PATCH = refuse
    do_DELETE = refuse


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    server = Proxy(sys.argv[1])
    port_file = Path(sys.argv[2])
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(f"{server.server_address[1]}\n")
    tmp.rename(port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
