#!/usr/bin/env python3
"""The real-registry stage: one set of images, pushed as real blobs and
manifests to a Docker Distribution registry and described to balena-sim by a
scenario file, so that the CLI can be run against both registries and its
download sizes compared. See README.md next to this file.

Standard library only (Python 3.11). Subcommands, all driven by run.sh:

  write DIR                  the blobs, manifests, scenario and plan into DIR
  push DIR URL               push everything the plan says to the registry at URL
  check-real DIR URL         read it all back from the registry at URL
  check-sim DIR SIM_LINE [--same-bytes]
                             read every image through balena-sim's API and registry
                             (--same-bytes: its manifests must be the pushed bytes)

(compare.py compares the CLI's JSON against both registries.)
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# Loopback never goes through a proxy.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

HOST = "registry2.balena-cloud.com"
TOKEN = "registry-stage-token-4fT8qZ1m"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join(
    [
        DOCKER_MANIFEST,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

# --- the fixture ---------------------------------------------------------------
#
# Layer name -> compressed size in bytes. Each layer is that many pseudo-random
# bytes seeded by its name, so digests are the same on every run.
LAYERS = {
    "base": 6144,  # every image of the application
    "main-mid": 3072,  # main in R1 and R2
    "main-top-1": 2048,
    "main-top-2": 2560,
    "worker-top-1": 1536,
    "worker-top-3": 1664,
    "proxy-top": 1024,
    "api-mid": 4096,  # api in R2 and cache: pulled once when both are new
    "api-top-2": 1792,
    "api-top-3": 1920,
    "cache-top": 1152,
    "delta-main-1-2": 1280,  # the ready delta main R1 -> R2 (its top layer)
    "delta-main-2-1": 1200,  # the delta main R2 -> R1 the renewal run waits for
}

APP = 10
SERVICES = {20: "main", 21: "worker", 22: "proxy", 23: "api", 24: "cache"}

# id -> service, layers, manifest format, image_size (uncompressed, only for
# the npm-compatible estimate), and whether the real registry gets its manifest.
IMAGES = {
    30: (20, ["base", "main-mid", "main-top-1"], "docker", 41_000, True),
    31: (21, ["base", "worker-top-1"], "docker", 23_000, True),
    32: (22, ["base", "proxy-top"], "docker", 21_000, True),
    33: (20, ["base", "main-mid", "main-top-2"], "docker", 42_000, True),
    # proxy rebuilt: new image id, same content, so the same content_hash.
    34: (22, ["base", "proxy-top"], "docker", 21_000, True),
    35: (23, ["base", "api-mid", "api-top-2"], "oci", 36_000, True),
    # The one image whose manifest the real registry does not have.
    36: (23, ["base", "api-top-3"], "oci", 25_000, False),
    37: (21, ["base", "worker-top-3"], "docker", 24_000, True),
    38: (24, ["base", "api-mid", "cache-top"], "docker", 33_000, True),
}
MISSING_IMAGES = [i for i, spec in IMAGES.items() if not spec[4]]
# A rebuild with the same content: the same manifest bytes (config included),
# so the same content_hash, under a new image id and repository.
SAME_CONTENT = {34: 32}

RELEASES = {
    100: ("a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4", [30, 31, 32]),
    101: ("b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5", [33, 31, 34, 35, 38]),
    102: ("c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6", [33, 37, 34, 36, 38]),
}
TARGET = 102
# device id -> release it runs (none runs R3, whose api manifest is missing
# on the real registry: the size of a source image is never in question).
DEVICES = {7001: 100, 7002: 100, 7003: 101}

# The ready delta: row id, source image, destination image, uncompressed size,
# layers. As many layers as its target, the two bottom ones the target's own:
# at those positions the target's chain is held by the source (the download
# rule of compare.py skips them).
DELTA = (5001, 30, 33, 4_000, ["base", "main-mid", "delta-main-1-2"])
DELTA_TAG = "delta-" + hashlib.sha256(b"delta main R1 R2").hexdigest()[:16]

# The delta the renewal run (`--prepare --wait`, R2 -> R1) has the simulator
# build: source, destination, build time, size. Its row is the next delta id
# and its tag is the simulator's `delta_location` of that row (ported below),
# so that the real registry can hold a manifest under that tag beforehand: one
# layer, 60 % of the size (the simulator's own delta manifest has the same
# sizes, other digests). One layer against the target's three: every layer
# counts.
RENEWAL_DELTA = (33, 30, 8_000, 2_000, ["delta-main-2-1"])
RENEWAL_FROM, RENEWAL_TO = 101, 100


def _mix(x: int) -> int:
    """balena-sim's `rng::mix` (splitmix64)."""
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def sim_delta_tag(row: int, src: int, dest: int) -> str:
    """balena-sim's `spec::delta_location` tag: `delta-<16 hex>` for a row."""
    key = _mix(row) ^ _mix((src << 1) & ((1 << 64) - 1)) ^ dest
    # `rng::hex_of(key, 16)` = `SplitMix::new(mix(key)).hex(16)`: one
    # splitmix64 step from that state, which is `mix` of it.
    return f"delta-{_mix(_mix(key)):016x}"


RENEWAL_ROW = DELTA[0] + 1
RENEWAL_TAG = sim_delta_tag(RENEWAL_ROW, RENEWAL_DELTA[0], RENEWAL_DELTA[1])


def layer_bytes(name: str) -> bytes:
    return random.Random(f"layer {name}").randbytes(LAYERS[name])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repository(image: int) -> str:
    return "v2/" + hashlib.sha256(f"registry stage image {image}".encode()).hexdigest()[:32]


def location(image: int) -> str:
    return f"{HOST}/{repository(image)}"


def build_manifest(fmt: str, layers: list[str], label: str) -> tuple[bytes, str, bytes]:
    """(manifest bytes, media type, config bytes) of an image with these layers."""
    manifest_type, config_type, layer_type = (
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER) if fmt == "docker" else (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    )
    # Not a runnable image: the layers are random bytes, not tarballs. The
    # registry stores and serves them all the same.
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"fixture": label}},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer_bytes(n)) for n in layers]},
        },
        indent=2,
        sort_keys=True,
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "size": len(config), "digest": digest_of(config)},
        "layers": [
            {"mediaType": layer_type, "size": LAYERS[n], "digest": digest_of(layer_bytes(n))} for n in layers
        ],
    }
    return json.dumps(manifest, indent=3).encode(), manifest_type, config


def image_manifest(image: int) -> tuple[bytes, str, bytes]:
    """The manifest of a fixture image, as pushed and given to the simulator."""
    service, layers, fmt, _, _ = IMAGES[image]
    image = SAME_CONTENT.get(image, image)
    return build_manifest(fmt, layers, f"{SERVICES[service]} image {image}")


def delta_manifest(src: int, dest: int, layers: list[str]) -> tuple[bytes, str, bytes]:
    """The manifest of a delta image: its destination's format."""
    return build_manifest(IMAGES[dest][2], layers, f"delta {src} to {dest}")


def layer_specs(layers: list[str]) -> list[dict]:
    return [{"digest": digest_of(layer_bytes(n)), "size": LAYERS[n]} for n in layers]


def write(out: Path) -> None:
    """Blobs and manifests under out/blobs, the push plan, and the scenario."""
    blobs = out / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)

    def keep(data: bytes) -> str:
        digest = digest_of(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    plan = {"repositories": {}, "images": {}, "delta": None}
    images = []
    for image, (service, layers, fmt, image_size, pushed) in IMAGES.items():
        manifest, media_type, config = image_manifest(image)
        repo = repository(image)
        manifest_digest = keep(manifest)
        entry = plan["repositories"].setdefault(repo, {"blobs": [], "manifests": []})
        # The blobs go to every repository, also the one whose manifest is
        # left out: it then exists, and only the manifest is unknown.
        for blob in [keep(layer_bytes(n)) for n in layers] + [keep(config)]:
            if blob not in entry["blobs"]:
                entry["blobs"].append(blob)
        if pushed:
            entry["manifests"].append({"reference": manifest_digest, "digest": manifest_digest, "media_type": media_type})
        plan["images"][str(image)] = {
            "repository": repo,
            "content_hash": manifest_digest,
            "media_type": media_type,
            "pushed": pushed,
            "layers": layer_specs(layers),
        }
        images.append(
            {
                "id": image,
                "is_a_build_of__service": service,
                "image_size": image_size,
                # The simulator's own manifest of these layers has another
                # config blob, so it would hash differently: name ours.
                "content_hash": manifest_digest,
                "is_stored_at__image_location": location(image),
                "layers": layer_specs(layers),
                **({"manifest_format": "oci"} if fmt == "oci" else {}),
                # The verbatim bytes pushed to the real registry: the
                # simulator serves them instead of a manifest of its own.
                "manifest": manifest.decode(),
            }
        )

    delta_id, src, dest, delta_size, delta_layers = DELTA
    manifest, media_type, config = delta_manifest(src, dest, delta_layers)
    repo = repository(dest)
    entry = plan["repositories"][repo]
    for blob in [keep(layer_bytes(n)) for n in delta_layers] + [keep(config)]:
        if blob not in entry["blobs"]:
            entry["blobs"].append(blob)
    entry["manifests"].append({"reference": DELTA_TAG, "digest": keep(manifest), "media_type": media_type})
    plan["delta"] = {
        "repository": repo,
        "tag": DELTA_TAG,
        "location": f"{location(dest)}:{DELTA_TAG}",
        "media_type": media_type,
        "layers": layer_specs(delta_layers),
        "manifest": manifest.decode(),
    }

    # The renewal run's delta, under the tag the simulator will give it.
    r_src, r_dest, _, _, r_layers = RENEWAL_DELTA
    r_manifest, r_type, r_config = delta_manifest(r_src, r_dest, r_layers)
    r_repo = repository(r_dest)
    entry = plan["repositories"][r_repo]
    for blob in [keep(layer_bytes(n)) for n in r_layers] + [keep(r_config)]:
        if blob not in entry["blobs"]:
            entry["blobs"].append(blob)
    entry["manifests"].append({"reference": RENEWAL_TAG, "digest": keep(r_manifest), "media_type": r_type})
    plan["renewal_delta"] = {
        "row": RENEWAL_ROW,
        "repository": r_repo,
        "tag": RENEWAL_TAG,
        "location": f"{location(r_dest)}:{RENEWAL_TAG}",
        "layers": layer_specs(r_layers),
    }

    scenario = {
        "name": "real-registry",
        "tokens": [TOKEN],
        "users": [{"id": 1, "username": "registry"}],
        "applications": [{"id": APP, "app_name": "registry-fleet", "should_be_running__release": TARGET}],
        "services": [{"id": sid, "application": APP, "service_name": name} for sid, name in SERVICES.items()],
        "images": images,
        "releases": [
            {"id": rid, "belongs_to__application": APP, "commit": commit, "images": imgs, "is_created_by__user": 1}
            for rid, (commit, imgs) in RELEASES.items()
        ],
        "devices": [
            {"id": did, "belongs_to__application": APP, "is_running__release": rel} for did, rel in DEVICES.items()
        ],
        "delta": {
            "pairs": [
                {
                    "src": r_src,
                    "dest": r_dest,
                    "duration_ms": RENEWAL_DELTA[2],
                    "outcomes": [{"result": "success", "size": RENEWAL_DELTA[3]}],
                }
            ]
        },
        "deltas": [
            {
                "id": delta_id,
                "originates_from__image": src,
                "produces__image": dest,
                "status": "success",
                "size": delta_size,
                "is_stored_at__location": plan["delta"]["location"],
                "layers": layer_specs(delta_layers),
                "manifest": plan["delta"]["manifest"],
            }
        ],
    }
    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    (out / "scenario.json").write_text(json.dumps(scenario, indent=2) + "\n")
    # The same without the `manifest` fields, for a simulator that does not
    # know them yet (it refuses unknown fields): run.sh falls back to it.
    for row in scenario["images"] + scenario["deltas"]:
        row.pop("manifest")
    (out / "scenario-without-manifests.json").write_text(json.dumps(scenario, indent=2) + "\n")
    blob_count = sum(len(r["blobs"]) for r in plan["repositories"].values())
    manifest_count = sum(len(r["manifests"]) for r in plan["repositories"].values())
    print(
        f"fixture: {len(IMAGES)} images ({len(MISSING_IMAGES)} without a manifest on the real registry), "
        f"1 ready delta (+1 for the renewal run), {len(plan['repositories'])} repositories, {blob_count} blob pushes, {manifest_count} manifests"
    )


# --- HTTP ------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=20) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())
    except (urllib.error.URLError, OSError) as e:
        raise StageError(f"{method} {url}: {getattr(e, 'reason', e)}") from None


class StageError(Exception):
    pass


def expect(answer: Answer, status: int, what: str) -> Answer:
    if answer.status != status:
        raise StageError(f"{what}: HTTP {answer.status}, expected {status}: {answer.body[:300]!r}")
    return answer


def load_plan(out: Path) -> dict:
    return json.loads((out / "plan.json").read_text())


def blob_path(out: Path, digest: str) -> Path:
    return out / "blobs" / digest.split(":")[1]


# --- the real registry -------------------------------------------------------------


def push(out: Path, url: str) -> None:
    plan = load_plan(out)
    blobs = manifests = 0
    for repo, entry in plan["repositories"].items():
        for digest in entry["blobs"]:
            data = blob_path(out, digest).read_bytes()
            start = expect(request("POST", f"{url}/v2/{repo}/blobs/uploads/"), 202, f"upload start in {repo}")
            upload = urllib.parse.urljoin(url + "/", start.headers["Location"])
            sep = "&" if "?" in upload else "?"
            done = expect(
                request(
                    "PUT",
                    f"{upload}{sep}digest={urllib.parse.quote(digest)}",
                    body=data,
                    headers={"Content-Type": "application/octet-stream"},
                ),
                201,
                f"blob {digest} in {repo}",
            )
            if done.headers.get("Docker-Content-Digest") != digest:
                raise StageError(f"blob {digest} in {repo}: stored as {done.headers.get('Docker-Content-Digest')}")
            blobs += 1
        for m in entry["manifests"]:
            data = blob_path(out, m["digest"]).read_bytes()
            done = expect(
                request(
                    "PUT",
                    f"{url}/v2/{repo}/manifests/{m['reference']}",
                    body=data,
                    headers={"Content-Type": m["media_type"]},
                ),
                201,
                f"manifest {m['reference']} in {repo}",
            )
            if done.headers.get("Docker-Content-Digest") != m["digest"]:
                raise StageError(f"manifest {m['reference']} in {repo}: stored as {done.headers.get('Docker-Content-Digest')}")
            manifests += 1
    print(f"pushed {blobs} blobs and {manifests} manifests to {url}")


def manifest_layers(body: bytes) -> list[dict]:
    return [{"digest": l["digest"], "size": l["size"]} for l in json.loads(body)["layers"]]


class Checks:
    def __init__(self, label: str):
        self.label = label
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {self.label}: {what}")

    def finish(self) -> None:
        print(f"{'PASS' if not self.failed else 'FAIL'} {self.label}: {self.passed} checks passed, {self.failed} failed")
        if self.failed:
            sys.exit(1)


def check_real(out: Path, url: str) -> None:
    plan = load_plan(out)
    c = Checks("real registry content")
    base = request("GET", f"{url}/v2/")
    c.check(base.status == 200, f"GET /v2/ answers {base.status} without credentials, expected 200")
    for image, info in plan["images"].items():
        repo, digest = info["repository"], info["content_hash"]
        a = request("GET", f"{url}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT})
        if not info["pushed"]:
            code = json.loads(a.body or b"{}").get("errors", [{}])[0].get("code") if a.body else None
            c.check(a.status == 404, f"image {image}: manifest left out answers {a.status}, expected 404")
            c.check(code == "MANIFEST_UNKNOWN", f"image {image}: error code {code}, expected MANIFEST_UNKNOWN")
            continue
        c.check(a.status == 200, f"image {image}: manifest by digest answers {a.status}")
        if a.status != 200:
            continue
        c.check(digest_of(a.body) == digest, f"image {image}: the manifest's sha256 is {digest_of(a.body)}, not {digest}")
        c.check(a.headers.get("Docker-Content-Digest") == digest, f"image {image}: Docker-Content-Digest header")
        c.check(a.headers.get("Content-Type") == info["media_type"], f"image {image}: Content-Type {a.headers.get('Content-Type')}")
        c.check(manifest_layers(a.body) == info["layers"], f"image {image}: layers differ from the plan")
        config = json.loads(a.body)["config"]
        for blob in info["layers"] + [{"digest": config["digest"], "size": config["size"]}]:
            h = request("HEAD", f"{url}/v2/{repo}/blobs/{blob['digest']}")
            c.check(h.status == 200, f"image {image}: HEAD blob {blob['digest']} answers {h.status}")
            c.check(
                h.headers.get("Content-Length") == str(blob["size"]),
                f"image {image}: blob {blob['digest']} is {h.headers.get('Content-Length')} bytes, manifest says {blob['size']}",
            )
    d = plan["delta"]
    a = request("GET", f"{url}/v2/{d['repository']}/manifests/{d['tag']}", headers={"Accept": ACCEPT})
    c.check(a.status == 200, f"delta tag {d['tag']} answers {a.status}")
    if a.status == 200:
        c.check(manifest_layers(a.body) == d["layers"], "delta manifest layers differ from the plan")
        for blob in d["layers"]:
            h = request("HEAD", f"{url}/v2/{d['repository']}/blobs/{blob['digest']}")
            c.check(h.headers.get("Content-Length") == str(blob["size"]), f"delta blob {blob['digest']} size")
    rd = plan["renewal_delta"]
    a = request("GET", f"{url}/v2/{rd['repository']}/manifests/{rd['tag']}", headers={"Accept": ACCEPT})
    c.check(a.status == 200, f"renewal delta tag {rd['tag']} answers {a.status}")
    if a.status == 200:
        c.check(manifest_layers(a.body) == rd["layers"], "renewal delta manifest layers differ from the plan")
    c.finish()


# --- balena-sim ---------------------------------------------------------------------


def parse_challenge(value: str) -> dict:
    scheme, _, params = value.partition(" ")
    out = {"scheme": scheme}
    for part in params.split(","):
        key, _, val = part.strip().partition("=")
        out[key] = val.strip('"')
    return out


def sim_get(sim: dict, path: str, method: str = "GET") -> Answer:
    """A registry request through the 401 challenge and the API's token endpoint."""
    url = sim["registry_url"] + path
    first = request(method, url, headers={"Accept": ACCEPT})
    if first.status != 401:
        raise StageError(f"{path}: the simulator answered {first.status} without a token, expected the 401 challenge")
    ch = parse_challenge(first.headers.get("WWW-Authenticate", ""))
    if ch.get("scheme", "").lower() != "bearer" or not ch.get("realm", "").startswith(sim["api_url"]):
        raise StageError(f"{path}: unexpected challenge {first.headers.get('WWW-Authenticate')!r}")
    query = urllib.parse.urlencode({"service": ch["service"], "scope": ch["scope"]})
    got = expect(
        request("GET", f"{ch['realm']}?{query}", headers={"Authorization": f"Bearer {sim['token']}"}),
        200,
        f"token for {ch['scope']}",
    )
    token = json.loads(got.body)["token"]
    return request(method, url, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})


def check_sim(out: Path, sim_line: str, same_bytes: bool) -> None:
    """`same_bytes`: the simulator was given the manifests' bytes (the
    scenario's `manifest` fields) and must serve exactly those."""
    plan = load_plan(out)
    sim = json.loads(sim_line)
    c = Checks("balena-sim serves the same images")
    api = expect(
        request(
            "GET",
            sim["api_url"] + "/v7/image?$select=id,content_hash,is_stored_at__image_location",
            headers={"Authorization": f"Bearer {sim['token']}"},
        ),
        200,
        "the API's images",
    )
    rows = {str(r["id"]): r for r in json.loads(api.body)["d"]}
    for image, info in plan["images"].items():
        row = rows.get(image, {})
        c.check(row.get("content_hash") == info["content_hash"], f"image {image}: API content_hash {row.get('content_hash')}")
        c.check(
            row.get("is_stored_at__image_location") == f"{HOST}/{info['repository']}",
            f"image {image}: API location {row.get('is_stored_at__image_location')}",
        )
        a = sim_get(sim, f"/v2/{info['repository']}/manifests/{info['content_hash']}")
        c.check(a.status == 200, f"image {image}: manifest by content_hash answers {a.status}")
        if a.status != 200:
            continue
        c.check(a.headers.get("Docker-Content-Digest") == info["content_hash"], f"image {image}: Docker-Content-Digest")
        c.check(a.headers.get("Content-Type") == info["media_type"], f"image {image}: Content-Type {a.headers.get('Content-Type')}")
        c.check(manifest_layers(a.body) == info["layers"], f"image {image}: layers {manifest_layers(a.body)} differ from the real registry's")
        if same_bytes:
            c.check(
                a.body == blob_path(out, info["content_hash"]).read_bytes(),
                f"image {image}: the manifest's bytes (sha256 {digest_of(a.body)}) are not the scenario's",
            )
        for blob in info["layers"]:
            h = sim_get(sim, f"/v2/{info['repository']}/blobs/{blob['digest']}", method="HEAD")
            c.check(
                h.status == 200 and h.headers.get("Content-Length") == str(blob["size"]),
                f"image {image}: HEAD blob {blob['digest']}: {h.status}, {h.headers.get('Content-Length')} bytes, expected {blob['size']}",
            )
    d = plan["delta"]
    a = sim_get(sim, f"/v2/{d['repository']}/manifests/{d['tag']}")
    c.check(a.status == 200, f"delta tag {d['tag']} answers {a.status}")
    if a.status == 200:
        c.check(a.headers.get("Content-Type") == d["media_type"], "delta manifest Content-Type")
        c.check(manifest_layers(a.body) == d["layers"], "delta manifest layers differ from the real registry's")
        if same_bytes:
            c.check(a.body.decode() == d["manifest"], "delta manifest: the bytes are not the scenario's")
    c.finish()


if __name__ == "__main__":
    args = sys.argv[1:]
    try:
        if args[:1] == ["write"] and len(args) == 2:
            write(Path(args[1]))
        elif args[:1] == ["push"] and len(args) == 3:
            push(Path(args[1]), args[2])
        elif args[:1] == ["check-real"] and len(args) == 3:
            check_real(Path(args[1]), args[2])
        elif args[:1] == ["check-sim"] and len(args) in (3, 4):
            check_sim(Path(args[1]), args[2], args[3:] == ["--same-bytes"])
        else:
            sys.exit(__doc__)
    except StageError as e:
        print(f"FAIL {e}")
        sys.exit(1)
