#!/usr/bin/env python3
"""The token-auth variant of the real-registry stage (README.md, "Token
auth"): Debian's docker-registry (Distribution 2.8) with `auth: token`,
behind two small servers of this file:

- the *front* plays the balena API: it serves `GET /auth/v1/token` itself
  (the balena token of the scenario as `Authorization: Bearer`, else 401;
  an RS256 JWT granting `pull` on exactly the repositories its `scope`
  parameters name with `pull`), records every token request, and forwards
  everything else to balena-sim's API;
- the *proxy* sits in front of the registry: it records every request's
  `Authorization`, answers the registry's own 401 challenge to a Bearer JWT
  older than 5 s (by `iat`) so that expiry shows within a run, and with
  `--hostile` rewrites the challenge's realm to carry a query of its own.

Standard library only, plus the `openssl` CLI for the key, the certificate
and the signatures. Subcommands, all driven by run.sh:

  keys DIR                              key.pem, cert.pem and kid in DIR
  front DIR API_URL BALENA_TOKEN LOG    serve the front; prints {"url": …}
  proxy REGISTRY_URL LOG [--hostile]    serve the proxy; prints {"url": …}
  mint DIR REPOSITORY...                print a token good for pull on those repositories
  selfcheck KEYS FIXTURE FRONT PROXY REGISTRY BALENA_TOKEN
                                        the flow by hand, before the CLI runs
  check FIXTURE OUTPUTS BALENA_TOKEN    the checks of the token runs (PASS/FAIL lines)
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

SERVICE = "registry2.balena-cloud.com"
ISSUER = "registry-stage-front"
# Distribution accepts a token until 60 s after `exp`; the proxy refuses one
# this many seconds after its `iat` already.
MAX_AGE_S = 5
TOKEN_LIFETIME_S = 3600
# The query the hostile proxy adds to the challenge's realm.
HOSTILE_QUERY = "scope=repository:*:*&scope=repository:v2/other:pull,push"
SCOPE_RE = re.compile(r"^repository:v2/[0-9a-f]{32}:pull$")

# The runs of the CLI against the hostile proxy (cases of compare.CASES).
HOSTILE_CASES = ["fleet"]
# The renewal run: R2 -> R1 on one device, main's delta to be built by the
# simulator in stage.RENEWAL_DELTA's 8 s, read when it is ready.
RENEWAL_ARGS = ["--from-release", "101", "--to-release", "100", "--prepare", "--wait", "--timeout", "60"]


# --- keys and tokens -----------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def libtrust_kid(der_public_key: bytes) -> str:
    """The key id Distribution gives a key of its rootcertbundle (libtrust's
    `keyIDFromCryptoKey`): the SHA-256 of the PKIX DER public key, first 240
    bits, base32 without padding, in 12 groups of 4 joined by `:`."""
    b32 = base64.b32encode(hashlib.sha256(der_public_key).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def keys(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
            "-subj", "/CN=registry-stage-token-issuer",
            "-keyout", str(out / "key.pem"), "-out", str(out / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    der = subprocess.run(
        ["openssl", "x509", "-in", str(out / "cert.pem"), "-noout", "-pubkey"], check=True, capture_output=True
    ).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, check=True, capture_output=True).stdout
    kid = libtrust_kid(der)
    (out / "kid").write_text(kid + "\n")
    print(f"token signing key: RSA 2048, self-signed certificate, kid {kid}")


class Signer:
    """RS256 JWTs signed by `openssl dgst -sha256 -sign` (PKCS#1 v1.5)."""

    def __init__(self, keydir: Path, header_mode: str = "kid"):
        self.key = str(keydir / "key.pem")
        self.kid = (keydir / "kid").read_text().strip()
        cert = (keydir / "cert.pem").read_text()
        self.x5c = "".join(l for l in cert.splitlines() if l and not l.startswith("-----"))
        self.header_mode = header_mode

    def header(self) -> dict:
        if self.header_mode == "x5c":
            return {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        return {"typ": "JWT", "alg": "RS256", "kid": self.kid}

    def token(self, repositories: list[str], now: int | None = None, audience=SERVICE) -> str:
        now = int(time.time()) if now is None else now
        claims = {
            "iss": ISSUER,
            "sub": "registry-stage",
            "aud": audience,
            "exp": now + TOKEN_LIFETIME_S,
            "nbf": now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": "repository", "name": r, "actions": ["pull"]} for r in repositories],
        }
        signing_input = b64url(json.dumps(self.header(), separators=(",", ":")).encode()) + "." + b64url(
            json.dumps(claims, separators=(",", ":")).encode()
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return signing_input + "." + b64url(sig)


def jwt_claims(token: str) -> dict | None:
    """The claims of a JWT, unverified; None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


# --- the servers -----------------------------------------------------------------

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "host",
}


class Log:
    """One JSON object a line, appended and flushed under a lock."""

    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, record: dict) -> None:
        with self.lock:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()


def forward(base: str, method: str, path: str, headers, body: bytes | None, drop_auth: bool = False):
    """(status, [(name, value)], body) of the same request to `base`."""
    target = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    out = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
    if drop_auth:
        out = {k: v for k, v in out.items() if k.lower() != "authorization"}
    try:
        conn.request(method, path, body=body, headers=out)
        r = conn.getresponse()
        data = r.read()
        return r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in HOP_BY_HOP], data
    finally:
        conn.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the logs are the records
        pass

    def body(self) -> bytes | None:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def answer(self, status: int, headers, body: bytes, head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self):
        self.handle_any("GET")

    def do_HEAD(self):
        self.handle_any("HEAD")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")


class Front(Handler):
    api: str
    balena_token: str
    signer: Signer
    log: Log

    def handle_any(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/auth/v1/token":
            try:
                status, headers, data = forward(self.api, method, self.path, self.headers, self.body())
            except OSError as e:
                status, headers, data = 502, [("Content-Type", "text/plain")], f"front: {e}".encode()
            self.answer(status, headers, data, head=method == "HEAD")
            return
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        auth = self.headers.get("Authorization")
        record = {"t": time.time(), "method": method, "query": query, "raw_query": url.query}
        if method != "GET":
            status, body, granted = 405, b"Method Not Allowed", []
        elif auth != f"Bearer {self.balena_token}":
            status, body, granted = 401, b"Unauthorized", []
        else:
            granted = []
            for key, value in query:
                if key != "scope":
                    continue
                for scope in value.split(" "):
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    if kind == "repository" and name and "*" not in name and "pull" in actions.split(","):
                        if name not in granted:
                            granted.append(name)
            token = self.signer.token(granted)
            status, body = 200, json.dumps({"token": token}).encode()
            record["iat"] = jwt_claims(token)["iat"]
        record.update({"status": status, "granted": granted, "with_balena_token": auth == f"Bearer {self.balena_token}"})
        self.log.write(record)
        self.answer(status, [("Content-Type", "application/json" if status == 200 else "text/plain")], body)


class Proxy(Handler):
    registry: str
    hostile: bool
    log: Log

    def rewrite(self, headers):
        if not self.hostile:
            return headers
        out = []
        for k, v in headers:
            if k.lower() == "www-authenticate":
                v = re.sub(r'realm="([^"?]*)[^"]*"', lambda m: f'realm="{m.group(1)}?{HOSTILE_QUERY}"', v)
            out.append((k, v))
        return out

    def handle_any(self, method: str) -> None:
        auth = self.headers.get("Authorization")
        record = {"t": time.time(), "method": method, "path": self.path, "authorization": auth}
        body = self.body()
        stale = False
        if auth and auth[:7].lower() == "bearer ":
            claims = jwt_claims(auth[7:].strip())
            if claims is not None and isinstance(claims.get("iat"), (int, float)):
                record["iat"] = claims["iat"]
                stale = time.time() - claims["iat"] > MAX_AGE_S
        record["refused_as_stale"] = stale
        try:
            # A stale token: the registry's own answer to a request without one.
            status, headers, data = forward(self.registry, method, self.path, self.headers, body, drop_auth=stale)
        except OSError as e:
            status, headers, data = 502, [("Content-Type", "text/plain")], f"proxy: {e}".encode()
        record["status"] = status
        if stale and status != 401:
            # The registry let the request in without a token: no challenge to pass on.
            status, headers, data = 401, [("Content-Type", "text/plain")], b"stale token"
        headers = self.rewrite(headers)
        record["challenge"] = next((v for k, v in headers if k.lower() == "www-authenticate"), None)
        self.log.write(record)
        self.answer(status, headers, data, head=method == "HEAD")


def serve(handler, line_extra: dict | None = None) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}", **(line_extra or {})}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


# --- the token registry, read back ----------------------------------------------


def selfcheck(keydir: Path, fixture: Path, front: str, proxy: str, registry: str, balena_token: str) -> None:
    """The flow by hand, before any CLI run: the registry's challenge through
    the proxy, the front's token, a manifest read with it, and what is refused."""
    sys.path.insert(0, str(Path(__file__).parent))
    from stage import ACCEPT, Checks, digest_of, parse_challenge, request

    plan = json.loads((fixture / "plan.json").read_text())
    image = next(i for i in plan["images"].values() if i["pushed"])
    other = next(i for i in plan["images"].values() if i["pushed"] and i["repository"] != image["repository"])
    repo, digest = image["repository"], image["content_hash"]
    path = f"/v2/{repo}/manifests/{digest}"
    c = Checks("token-auth registry, front and proxy")

    a = request("GET", proxy + path, headers={"Accept": ACCEPT})
    ch = parse_challenge(a.headers.get("WWW-Authenticate", "") if a.status == 401 else "")
    c.check(a.status == 401, f"a manifest without a token answers {a.status}, expected 401")
    c.check(
        ch.get("scheme") == "Bearer" and ch.get("realm") == f"{front}/auth/v1/token" and ch.get("service") == SERVICE
        and ch.get("scope") == f"repository:{repo}:pull",
        f"the challenge is {a.headers.get('WWW-Authenticate')!r}",
    )
    query = urllib.parse.urlencode({"service": SERVICE, "scope": f"repository:{repo}:pull"})
    for auth, what in ((None, "no Authorization"), ("Bearer wrong-token", "another token")):
        t = request("GET", f"{front}/auth/v1/token?{query}", headers={"Authorization": auth} if auth else {})
        c.check(t.status == 401, f"the front answers {t.status} to a token request with {what}, expected 401")
    t = request("GET", f"{front}/auth/v1/token?{query}", headers={"Authorization": f"Bearer {balena_token}"})
    c.check(t.status == 200, f"the front answers {t.status} to the balena token, expected 200")
    token = json.loads(t.body).get("token", "") if t.status == 200 else ""
    claims = jwt_claims(token) or {}
    c.check(
        claims.get("access") == [{"type": "repository", "name": repo, "actions": ["pull"]}]
        and claims.get("aud") == SERVICE and claims.get("iss") == ISSUER,
        f"the token's claims {claims}",
    )
    a = request("GET", proxy + path, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})
    c.check(a.status == 200 and digest_of(a.body) == digest, f"the manifest with the token: {a.status}, sha256 {digest_of(a.body)}")
    a = request("GET", registry + path, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})
    c.check(a.status == 200, f"the registry itself accepts the front's token: {a.status}")
    a = request("GET", f"{proxy}/v2/{other['repository']}/manifests/{other['content_hash']}", headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})
    c.check(a.status == 401, f"the token read another repository: {a.status}, expected 401")
    signer = Signer(keydir)
    stale = signer.token([repo], now=int(time.time()) - MAX_AGE_S - 2)
    a = request("GET", registry + path, headers={"Accept": ACCEPT, "Authorization": f"Bearer {stale}"})
    c.check(a.status == 200, f"the registry itself accepts a token {MAX_AGE_S + 2} s old: {a.status}")
    a = request("GET", proxy + path, headers={"Accept": ACCEPT, "Authorization": f"Bearer {stale}"})
    c.check(
        a.status == 401 and a.headers.get("WWW-Authenticate", "").startswith(f'Bearer realm="{front}/auth/v1/token"'),
        f"the proxy answers {a.status} ({a.headers.get('WWW-Authenticate')!r}) to a token {MAX_AGE_S + 2} s old, expected the challenge",
    )
    x5c = Signer(keydir, "x5c").token([repo])
    a = request("GET", registry + path, headers={"Accept": ACCEPT, "Authorization": f"Bearer {x5c}"})
    c.check(a.status == 200, f"the registry accepts a token with an x5c header instead of kid: {a.status}")
    a = request(
        "GET", registry + path,
        headers={"Accept": ACCEPT, "Authorization": f"Bearer {signer.token([repo], audience=[SERVICE])}"},
    )
    c.check(a.status == 401, f"Distribution 2.8 refuses an `aud` list: {a.status}, expected 401")
    api = request("GET", front + "/v7/application?$select=id", headers={"Authorization": f"Bearer {balena_token}"})
    c.check(api.status == 200 and b'"d"' in api.body, f"the front forwards the API: {api.status}")
    c.finish()


# --- the checks -------------------------------------------------------------------


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def repositories_read(proxy_records: list[dict]) -> set[str]:
    """The repositories of the manifests a run asked the registry for."""
    found = set()
    for r in proxy_records:
        m = re.match(r"^/v2/(.+)/manifests/[^/]+$", urllib.parse.urlsplit(r["path"]).path)
        if m:
            found.add(m.group(1))
    return found


def challenge_service(proxy_records: list[dict]) -> str:
    """The `service` of the challenges a run was given (the registry's)."""
    for r in proxy_records:
        m = re.search(r'service="([^"]*)"', r.get("challenge") or "")
        if m:
            return m.group(1)
    return SERVICE


def token_request_problems(tokens: list[dict], proxy_records: list[dict]) -> list[str]:
    """What is wrong with the token requests of one run (empty: nothing)."""
    problems = []
    if not tokens:
        return ["the front saw no token request"]
    read = repositories_read(proxy_records)
    service = challenge_service(proxy_records)
    for i, t in enumerate(tokens, 1):
        keys = [k for k, _ in t["query"]]
        services = [v for k, v in t["query"] if k == "service"]
        scopes = [s for k, v in t["query"] if k == "scope" for s in v.split(" ")]
        others = sorted({k for k in keys if k not in ("service", "scope")})
        if services != [service]:
            problems.append(f"token request {i}: service parameters {services}, expected exactly [{service!r}]")
        if others:
            problems.append(f"token request {i}: other parameters {others}")
        if not scopes:
            problems.append(f"token request {i}: no scope")
        bad = [s for s in scopes if not SCOPE_RE.match(s)]
        if bad:
            problems.append(f"token request {i}: scopes not of the form repository:v2/<32 hex>:pull: {bad}")
        unread = sorted({s.split(":")[1] for s in scopes if SCOPE_RE.match(s)} - read)
        if unread:
            problems.append(f"token request {i}: scopes for repositories the run never read: {unread}")
        if t.get("status") != 200:
            problems.append(f"token request {i}: the front answered {t.get('status')}")
        if not t.get("with_balena_token"):
            problems.append(f"token request {i}: without the balena token")
    return problems


SIZE_KEYS = {"download_size", "pull_size", "download_size_unknown", "estimated_download_size", "estimated_fleet_download_size"}


def sizes_of(doc) -> dict:
    """Every size key of an output, by its place: (path, key) -> value."""
    found = {}

    def walk(value, path):
        if isinstance(value, dict):
            label = value.get("service_name")
            if "originates_from__release" in value:
                label = f"{value['originates_from__release'].get('id')}->{value['produces__release'].get('id')}"
            here = path + ((label,) if label else ())
            for k, v in value.items():
                if k in SIZE_KEYS:
                    found[" ".join(map(str, here)) + " " + k] = v
                else:
                    walk(v, here)
        elif isinstance(value, list):
            for v in value:
                walk(v, path)

    walk(doc, ())
    return found


def known_sizes(doc) -> tuple[bool, list[str]]:
    """Whether every service and transition of a wait's output has its sizes."""
    missing = []
    for t in doc.get("transitions", [doc]):
        for s in t.get("is_produced_by__service_update", []):
            if "download_size" not in s or s.get("download_size_unknown"):
                missing.append(f"{s.get('service_name')}: {({k: s[k] for k in SIZE_KEYS if k in s}) or 'no size keys'}")
        if "estimated_download_size" not in t or t.get("download_size_unknown"):
            missing.append(f"transition: {({k: t[k] for k in SIZE_KEYS if k in t}) or 'no size keys'}")
    return not missing, missing


class Result:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, why: str = "") -> None:
        if ok:
            self.passed += 1
            print(f"PASS {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {why}" if why else ""))


def run_files(outputs: Path, stem: str):
    code = (outputs / f"{stem}.exit").read_text().strip()
    try:
        doc = json.loads((outputs / f"{stem}.json").read_text())
    except (OSError, ValueError):
        doc = None
    return code, doc, read_log(outputs / f"{stem}.tokens.jsonl"), read_log(outputs / f"{stem}.proxy.jsonl")


def check(fixture: Path, outputs: Path, balena_token: str) -> Result:
    sys.path.insert(0, str(Path(__file__).parent))
    import compare
    from stage import RENEWAL_DELTA, RENEWAL_FROM, RENEWAL_TO, delta_manifest

    src, dest, _, _, layers = RENEWAL_DELTA
    plan = json.loads((fixture / "plan.json").read_text())
    return checks(
        outputs,
        balena_token,
        list(compare.CASES),
        HOSTILE_CASES,
        "renewal",
        compare.model(RENEWAL_FROM, RENEWAL_TO, {(src, dest): delta_manifest(src, dest, layers)[0]}),
        plan["renewal_delta"],
    )


def checks(outputs: Path, balena_token: str, cases: list[str], hostile_cases: list[str], renewal: str | None,
           renewal_expected=None, renewal_delta=None) -> Result:
    r = Result()
    every_proxy: list[dict] = []
    for case in cases:
        code, doc, tokens, proxied = run_files(outputs, f"{case}.token")
        every_proxy += proxied
        _, open_doc, _, _ = run_files(outputs, f"{case}.real")
        r.check(code == "0" and doc is not None, f"token {case}: the run exits 0 with JSON", f"exit {code}")
        if doc is None:
            continue
        mine, theirs = sizes_of(doc), sizes_of(open_doc or {})
        diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        r.check(
            bool(mine) and not diff,
            f"token {case}: the same sizes as against the open registry",
            "no size keys" if not mine else "; ".join(f"{k}: {mine.get(k)} (token) vs {theirs.get(k)} (open)" for k in diff[:6]),
        )
        manifests = [p for p in proxied if "/manifests/" in p["path"]]
        ok_manifests = [p for p in manifests if p["status"] in (200, 404)]
        r.check(bool(ok_manifests), f"token {case}: manifests read through the token registry", f"{len(manifests)} manifest requests, answers {sorted({p['status'] for p in manifests})}")
        problems = token_request_problems(tokens, proxied)
        r.check(not problems, f"token {case}: {len(tokens)} token request(s), each with one service and pull scopes of read repositories only", "; ".join(problems))
    for case in hostile_cases:
        code, doc, tokens, proxied = run_files(outputs, f"{case}.hostile")
        every_proxy += proxied
        challenged = any(p.get("challenge") and HOSTILE_QUERY.split("&")[0] in p["challenge"] for p in proxied)
        r.check(challenged, f"hostile {case}: the proxy's challenges carry a realm with a query of its own")
        problems = []
        for i, t in enumerate(tokens, 1):
            scopes = [s for k, v in t["query"] if k == "scope" for s in v.split(" ")]
            services = [v for k, v in t["query"] if k == "service"]
            if "repository:*:*" in scopes:
                problems.append(f"token request {i} asks for repository:*:*")
            if any("push" in s.split(":")[-1] for s in scopes):
                problems.append(f"token request {i} asks for push: {[s for s in scopes if 'push' in s]}")
            if any("v2/other" in s for s in scopes):
                problems.append(f"token request {i} names a repository from the realm: {[s for s in scopes if 'v2/other' in s]}")
            if len(services) != 1:
                problems.append(f"token request {i} has {len(services)} service parameters")
        problems += [p for p in token_request_problems(tokens, proxied) if p not in problems]
        r.check(
            bool(tokens) and not problems,
            f"hostile {case}: the realm's query reaches the front with none of its scopes and no second service",
            "; ".join(dict.fromkeys(problems)) or "no token request",
        )
        _, open_doc, _, _ = run_files(outputs, f"{case}.real")
        mine, theirs = sizes_of(doc or {}), sizes_of(open_doc or {})
        r.check(code == "0" and bool(mine) and mine == theirs, f"hostile {case}: the same sizes as against the open registry", f"exit {code}, {len(mine)} size keys")
    if renewal:
        code, doc, tokens, proxied = run_files(outputs, renewal)
        every_proxy += proxied
        stale = [p for p in proxied if p.get("refused_as_stale")]
        r.check(code == "0" and doc is not None, f"renewal: the --wait run exits 0 with JSON", f"exit {code}")
        span = (max(p["t"] for p in proxied) - min(t["t"] for t in tokens)) if tokens and proxied else 0
        r.check(span > MAX_AGE_S, f"renewal: the run reads the registry more than {MAX_AGE_S} s after its first token ({span:.1f} s)")
        ok, missing = known_sizes(doc or {})
        r.check(
            doc is not None and ok,
            "renewal: every size known at the end of the wait",
            f"{'; '.join(missing)} ({len(stale)} request(s) refused with a stale token, {len(tokens)} token request(s))",
        )
        r.check(len(tokens) >= 2, f"renewal: a new token after the first one went stale ({len(tokens)} token request(s))",
                f"{len(stale)} registry request(s) answered 401 for a token older than {MAX_AGE_S} s, and no new token was asked for")
        if renewal_delta is not None:
            try:
                rows = json.loads((outputs / "renewal.deltas.json").read_text())["d"]
            except (OSError, ValueError, KeyError):
                rows = []
            row = next((d for d in rows if d.get("id") == renewal_delta["row"]), {})
            r.check(
                row.get("is_stored_at__location") == renewal_delta["location"],
                "renewal: the simulator built the delta where the real registry holds it",
                f"delta row {renewal_delta['row']}: {row or 'absent'}, expected at {renewal_delta['location']}",
            )
        if renewal_expected is not None and doc is not None and ok:
            got = {
                s["service_name"]: (s.get("download_size"), s.get("pull_size"))
                for t in doc.get("transitions", [doc])
                for s in t.get("is_produced_by__service_update", [])
                if s["service_name"] in renewal_expected
            }
            r.check(got == renewal_expected, "renewal: (download_size, pull_size) as the download rule has them", f"{got} vs {renewal_expected}")
    leaked = [p for p in every_proxy if p.get("authorization") and balena_token in p["authorization"]]
    r.check(
        bool(every_proxy) and not leaked,
        f"the balena token never reached the registry's proxy ({len(every_proxy)} requests, "
        f"{sum(1 for p in every_proxy if p.get('authorization'))} with Authorization)",
        f"{len(leaked)} request(s) carried it, e.g. {leaked[0]['method']} {leaked[0]['path']}" if leaked else "no request recorded",
    )
    print(f"{'PASS' if not r.failed else 'FAIL'} token auth: {r.passed} checks passed, {r.failed} failed")
    return r


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["keys"] and len(args) == 2:
        keys(Path(args[1]))
    elif args[:1] == ["front"] and len(args) in (5, 6):
        Front.api = args[2].rstrip("/")
        Front.balena_token = args[3]
        Front.signer = Signer(Path(args[1]), args[5] if len(args) == 6 else "kid")
        Front.log = Log(args[4])
        serve(Front)
    elif args[:1] == ["proxy"] and len(args) in (3, 4):
        Proxy.registry = args[1].rstrip("/")
        Proxy.hostile = args[3:] == ["--hostile"]
        Proxy.log = Log(args[2])
        serve(Proxy)
    elif args[:1] == ["mint"] and len(args) >= 2:
        print(Signer(Path(args[1])).token(args[2:]))
    elif args[:1] == ["selfcheck"] and len(args) == 7:
        selfcheck(Path(args[1]), Path(args[2]), args[3].rstrip("/"), args[4].rstrip("/"), args[5].rstrip("/"), args[6])
    elif args[:1] == ["check"] and len(args) == 4:
        sys.exit(1 if check(Path(args[1]), Path(args[2]), args[3]).failed else 0)
    else:
        sys.exit(__doc__)
