#!/usr/bin/env python3
"""The engine stage: images built and pushed with a real Docker engine, pulled
by a real Docker engine through a counting proxy, and the bytes it fetched
compared with an independent model of the download rule and with the CLI's
figures. See README.md next to this file.

Standard library only (Python 3.11). Subcommands, all driven by run.sh (the
Docker commands go to the engine named by DOCKER_HOST):

  write DIR                        layer files, Dockerfiles and the plan into DIR
  build-push DIR REGISTRY_URL      docker build + docker push every image
  push-deltas DIR REGISTRY_URL     push the delta images (plain HTTP)
  scenario DIR                     the simulator's scenario file
  cases DIR                        one line per case: name, then the CLI's arguments
  case DIR NAME PROXY_URL          one transition on a fresh engine, bytes counted
  report DIR REGISTRY_URL PROXY_URL
                                   the model, the old figure, the CLI's figures:
                                   PASS/FAIL lines, the table, "N passed, M failed"
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# Loopback never goes through a proxy.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

HOST = "registry2.balena-cloud.com"
TOKEN = "engine-stage-token-Qm3v8Lr2"
STRATEGY = "io.balena.update.strategy"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT = ", ".join(
    [
        DOCKER_MANIFEST,
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

# --- the fixture -------------------------------------------------------------------
#
# Layer name -> bytes of the one file its COPY adds (pseudo-random, seeded by
# the name, so incompressible and the same on every run). Distinct sizes make
# every sum in the table traceable to its layers.
LAYERS = {
    "A": 40960,  # the common base
    "A2": 39936,  # the bumped base
    "B": 20480,
    "C": 10240,
    "D": 8192,
    "E": 6144,
    "N": 30720,  # the new prefix two services share
    "X0": 3072,
    "X1": 5120,
    "Y0": 3584,
    "Y1": 7168,
    "K": 2560,
    "G": 9216,
    "F": 4096,
    "W1": 4608,
    "W2": 5632,
    "O": 11264,
    "S": 2048,
}
FILE_MTIME = 1_700_000_000  # every layer file's mtime, so layer tars are reproducible

# Image key -> layers, base first. Every image gets its own repository, as on
# balenaCloud, and a label naming it, so no two images share a config.
IMAGES = {
    "sb-main-1": ["A", "B"],
    "sb-main-2": ["A", "C"],
    "bb-main-1": ["A", "B", "C"],
    "bb-main-2": ["A2", "B", "C"],
    "oc-main-1": ["A", "B", "C"],
    "oc-main-2": ["A", "D", "C"],
    "np-x-1": ["A", "X0"],
    "np-x-2": ["N", "X1"],
    "np-y-1": ["A", "Y0"],
    "np-y-2": ["N", "Y1"],
    "mx-keep": ["A", "K"],
    "mx-gone": ["A", "G"],
    "mx-web-1": ["A", "W1"],
    "mx-web-2": ["A", "W2"],
    "mx-fresh": ["A", "G", "F"],
    "dd-main-1": ["A", "B", "C"],
    "dd-main-2": ["A", "B", "D"],
    "dd-side": ["A", "S"],
    "kd-old": ["A", "B", "O"],
    "kd-web-1": ["A", "W1"],
    "kd-web-2": ["A", "B", "W2"],
    "dl-main-1": ["A", "B", "C"],
    "dl-main-2": ["A", "B", "D", "E"],
}

# The transitions. `labels`: strategy labels of the source (`from`) and target
# (`to`) release's compose document. `delta`: a service with a ready v3 delta
# (its delta image pushed, a `success` row in the simulator). `engine`: the
# engine pulls the target release (False: a delta, which no Docker engine
# applies, decides the figure).
CASES = [
    {
        "name": "shared-base",
        "about": "main [A,B] -> [A,C]: only C above the held chain [A]",
        "from": {"main": "sb-main-1"},
        "to": {"main": "sb-main-2"},
    },
    {
        "name": "base-bump",
        "about": "main [A,B,C] -> [A2,B,C]: everything above the bump",
        "from": {"main": "bb-main-1"},
        "to": {"main": "bb-main-2"},
    },
    {
        "name": "other-chain",
        "about": "main [A,B,C] -> [A,D,C]: D and C, though C is held on another chain",
        "from": {"main": "oc-main-1"},
        "to": {"main": "oc-main-2"},
    },
    {
        "name": "shared-new-prefix",
        "about": "x [A,X0] -> [N,X1], y [A,Y0] -> [N,Y1]: N once",
        "from": {"x": "np-x-1", "y": "np-y-1"},
        "to": {"x": "np-x-2", "y": "np-y-2"},
    },
    {
        "name": "unchanged-new-removed",
        "about": "keep unchanged, web [A,W1] -> [A,W2], gone removed (kept until the end), fresh new [A,G,F] on gone's chain",
        "from": {"gone": "mx-gone", "keep": "mx-keep", "web": "mx-web-1"},
        "to": {"fresh": "mx-fresh", "keep": "mx-keep", "web": "mx-web-2"},
    },
    {
        "name": "delete-then-download",
        "about": "main [A,B,C] -> [A,B,D] delete-then-download, with a ready delta it must not use; side [A,S] unchanged",
        "from": {"main": "dd-main-1", "side": "dd-side"},
        "to": {"main": "dd-main-2", "side": "dd-side"},
        "labels": {"from": {"main": "delete-then-download"}, "to": {"main": "delete-then-download"}},
        "delta": "main",
    },
    {
        "name": "kill-then-download",
        "about": "old [A,B,O] removed, kill-then-download; web [A,W1] -> [A,B,W2] fetches B again",
        "from": {"old": "kd-old", "web": "kd-web-1"},
        "to": {"web": "kd-web-2"},
        "labels": {"from": {"old": "kill-then-download"}},
    },
    {
        "name": "ready-delta",
        "about": "main [A,B,C] -> [A,B,D,E] with a ready delta: its layers for D and E",
        "from": {"main": "dl-main-1"},
        "to": {"main": "dl-main-2"},
        "delta": "main",
        "engine": False,
    },
]

# Bytes of the data file in the delta layer at a position whose target chain
# the delta's source image does not hold (per position, counted from the base).
DELTA_DATA = [1536, 1280, 1024, 768]


def layer_bytes(name: str) -> bytes:
    return random.Random(f"engine stage layer {name}").randbytes(LAYERS[name])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repository(key: str) -> str:
    return "v2/" + hashlib.sha256(f"engine stage image {key}".encode()).hexdigest()[:32]


def delta_tag(case: str) -> str:
    return "delta-" + hashlib.sha256(f"engine stage delta {case}".encode()).hexdigest()[:16]


def image_ids() -> dict[str, int]:
    return {key: 300 + i for i, key in enumerate(IMAGES)}


def case_by_name(name: str) -> dict:
    for case in CASES:
        if case["name"] == name:
            return case
    raise StageError(f"no case {name}")


def label(case: dict, side: str, service: str) -> str | None:
    return case.get("labels", {}).get(side, {}).get(service)


# --- HTTP and helpers -----------------------------------------------------------------


class StageError(Exception):
    pass


class Answer:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=30) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())
    except (urllib.error.URLError, OSError) as e:
        raise StageError(f"{method} {url}: {getattr(e, 'reason', e)}") from None


def expect(answer: Answer, status: int, what: str) -> Answer:
    if answer.status != status:
        raise StageError(f"{what}: HTTP {answer.status}, expected {status}: {answer.body[:300]!r}")
    return answer


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise StageError(f"docker {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return done


# The client of the Debian package matches its daemon; another `docker` may
# come first on PATH.
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")


def host_port(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def load(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def save(out: Path, name: str, value) -> None:
    (out / name).write_text(json.dumps(value, indent=2) + "\n")


# --- write ------------------------------------------------------------------------------


def write(out: Path) -> None:
    ctx = out / "context"
    files = out / "dockerfiles"
    ctx.mkdir(parents=True, exist_ok=True)
    files.mkdir(parents=True, exist_ok=True)
    for name in LAYERS:
        path = ctx / f"{name}.bin"
        path.write_bytes(layer_bytes(name))
        path.chmod(0o644)
        os.utime(path, (FILE_MTIME, FILE_MTIME))
    for key, layers in IMAGES.items():
        lines = ["FROM scratch"] + [f"COPY {n}.bin /{n}.bin" for n in layers]
        lines.append(f'LABEL io.balena.engine-stage.image="{key}"')
        (files / f"{key}.Dockerfile").write_text("\n".join(lines) + "\n")
    used = {k for c in CASES for side in ("from", "to") for k in c[side].values()}
    missing = used - set(IMAGES)
    if missing:
        raise StageError(f"cases use unknown images {sorted(missing)}")
    print(f"fixture: {len(LAYERS)} layer files, {len(IMAGES)} Dockerfiles, {len(CASES)} cases")


# --- build-push --------------------------------------------------------------------------


def build_push(out: Path, registry: str) -> None:
    reg = host_port(registry)
    pushed = {}
    t0 = time.monotonic()
    for key, layers in IMAGES.items():
        tag = f"{reg}/{repository(key)}:{key}"
        docker("build", "-q", "-f", str(out / "dockerfiles" / f"{key}.Dockerfile"), "-t", tag, str(out / "context"))
        diff_ids = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", tag).stdout)
        if len(diff_ids) != len(layers):
            raise StageError(f"{key}: built with {len(diff_ids)} layers, expected {len(layers)} (one per COPY)")
        docker("push", tag)
        repo_digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", tag).stdout)
        mine = [d for d in repo_digests if d.startswith(f"{reg}/{repository(key)}@")]
        if len(mine) != 1:
            raise StageError(f"{key}: RepoDigests {repo_digests}")
        digest = mine[0].split("@", 1)[1]
        # The registry's own word on it.
        got = expect(
            request("GET", f"{registry}/v2/{repository(key)}/manifests/{key}", headers={"Accept": ACCEPT}),
            200,
            f"{key}: manifest by tag",
        )
        if got.headers.get("Docker-Content-Digest") != digest or digest_of(got.body) != digest:
            raise StageError(f"{key}: the registry has {got.headers.get('Docker-Content-Digest')}, docker says {digest}")
        manifest = json.loads(got.body)
        if manifest.get("mediaType") != DOCKER_MANIFEST or len(manifest["layers"]) != len(layers):
            raise StageError(f"{key}: unexpected manifest {manifest.get('mediaType')} with {len(manifest['layers'])} layers")
        pushed[key] = {"repository": repository(key), "digest": digest, "diff_ids": diff_ids}
    # The same layer file gives the same blob in every image.
    by_name: dict[str, set] = {}
    for key, layers in IMAGES.items():
        got = request("GET", f"{registry}/v2/{repository(key)}/manifests/{pushed[key]['digest']}", headers={"Accept": ACCEPT})
        for name, layer in zip(layers, json.loads(got.body)["layers"]):
            by_name.setdefault(name, set()).add(layer["digest"])
    mixed = {n: d for n, d in by_name.items() if len(d) != 1}
    if mixed:
        raise StageError(f"a layer file gave several blobs: {mixed}")
    save(out, "pushed.json", {"images": pushed, "layer_blobs": {n: d.pop() for n, d in by_name.items()}})
    print(f"built and pushed {len(pushed)} images (one layer per COPY) in {time.monotonic() - t0:.1f} s")


# --- push-deltas ---------------------------------------------------------------------------


def tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = FILE_MTIME
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def get_manifest(registry: str, repo: str, ref: str) -> tuple[bytes, dict]:
    got = expect(request("GET", f"{registry}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}), 200, f"manifest {repo}:{ref}")
    return got.body, json.loads(got.body)


def chains(digests: list[str]) -> list[tuple]:
    return [tuple(digests[: i + 1]) for i in range(len(digests))]


def push_blob(registry: str, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    start = expect(request("POST", f"{registry}/v2/{repo}/blobs/uploads/"), 202, f"upload start in {repo}")
    upload = urllib.parse.urljoin(registry + "/", start.headers["Location"])
    sep = "&" if "?" in upload else "?"
    expect(
        request("PUT", f"{upload}{sep}digest={urllib.parse.quote(digest)}", body=data, headers={"Content-Type": "application/octet-stream"}),
        201,
        f"blob {digest} in {repo}",
    )
    return digest


def push_deltas(out: Path, registry: str) -> None:
    """One delta image per case with a ready delta, as balena's engine builds
    them: one layer per target layer, the layers whose target chain the
    source image holds an empty tar, the others a tar of delta data; the
    target's own config blob."""
    pushed = load(out, "pushed.json")
    deltas = {}
    empty = tar_gz({})
    for case in CASES:
        service = case.get("delta")
        if not service:
            continue
        src, dest = case["from"][service], case["to"][service]
        _, src_manifest = get_manifest(registry, repository(src), pushed["images"][src]["digest"])
        _, dest_manifest = get_manifest(registry, repository(dest), pushed["images"][dest]["digest"])
        held = set(chains([l["digest"] for l in src_manifest["layers"]]))
        dest_chains = chains([l["digest"] for l in dest_manifest["layers"]])
        repo = repository(dest)
        layers = []
        for i, chain in enumerate(dest_chains):
            data = empty if chain in held else tar_gz({f"delta-{i}": random.Random(f"delta {case['name']} {i}").randbytes(DELTA_DATA[i])})
            layers.append({"mediaType": DOCKER_LAYER, "size": len(data), "digest": push_blob(registry, repo, data)})
        # The target's config: already in the repository; pushed again to be sure.
        config = expect(request("GET", f"{registry}/v2/{repo}/blobs/{dest_manifest['config']['digest']}"), 200, "target config")
        push_blob(registry, repo, config.body)
        manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": dest_manifest["config"], "layers": layers}, indent=3
        ).encode()
        tag = delta_tag(case["name"])
        done = expect(
            request("PUT", f"{registry}/v2/{repo}/manifests/{tag}", body=manifest, headers={"Content-Type": DOCKER_MANIFEST}),
            201,
            f"delta manifest {tag}",
        )
        deltas[case["name"]] = {
            "service": service,
            "repository": repo,
            "tag": tag,
            "digest": done.headers.get("Docker-Content-Digest"),
            "location": f"{HOST}/{repo}:{tag}",
        }
    pushed["deltas"] = deltas
    save(out, "pushed.json", pushed)
    print(f"pushed {len(deltas)} delta images")


# --- scenario ------------------------------------------------------------------------------


def case_ids(index: int) -> dict:
    base = 10 * (index + 1)
    return {"app": 100 + index, "from": 1000 + base, "to": 1000 + base + 1, "device": 7000 + index, "delta": 5000 + index}


def composition(case: dict, side: str) -> dict:
    services = {}
    for name in sorted(case[side]):
        entry = {"build": f"./{name}"}
        strategy = label(case, side, name)
        if strategy:
            entry["labels"] = {STRATEGY: strategy}
        services[name] = entry
    return {"version": "2.1", "services": services}


def scenario(out: Path) -> None:
    pushed = load(out, "pushed.json")
    ids = image_ids()
    apps, services, images, releases, devices, deltas = [], [], [], [], [], []
    seen_images = set()
    service_id = 20
    for index, case in enumerate(CASES):
        cid = case_ids(index)
        apps.append({"id": cid["app"], "app_name": f"engine-{case['name']}", "should_be_running__release": cid["to"]})
        sids = {}
        for name in sorted(set(case["from"]) | set(case["to"])):
            service_id += 1
            sids[name] = service_id
            services.append({"id": service_id, "application": cid["app"], "service_name": name})
        for side in ("from", "to"):
            for name, key in sorted(case[side].items()):
                if key in seen_images:
                    continue
                seen_images.add(key)
                images.append(
                    {
                        "id": ids[key],
                        "is_a_build_of__service": sids[name],
                        "image_size": sum(LAYERS[n] for n in IMAGES[key]),
                        "content_hash": pushed["images"][key]["digest"],
                        "is_stored_at__image_location": f"{HOST}/{repository(key)}",
                    }
                )
            releases.append(
                {
                    "id": cid[side],
                    "belongs_to__application": cid["app"],
                    "commit": hashlib.sha1(f"engine stage {case['name']} {side}".encode()).hexdigest(),
                    "images": [ids[key] for _, key in sorted(case[side].items())],
                    "is_created_by__user": 1,
                    "composition": composition(case, side),
                }
            )
        devices.append({"id": cid["device"], "belongs_to__application": cid["app"], "is_running__release": cid["from"]})
        if case.get("delta"):
            d = pushed["deltas"][case["name"]]
            src, dest = case["from"][d["service"]], case["to"][d["service"]]
            deltas.append(
                {
                    "id": cid["delta"],
                    "originates_from__image": ids[src],
                    "produces__image": ids[dest],
                    "version": 3,
                    "status": "success",
                    "size": sum(DELTA_DATA),
                    "is_stored_at__location": d["location"],
                }
            )
    doc = {
        "name": "engine-stage",
        "tokens": [TOKEN],
        "users": [{"id": 1, "username": "engine"}],
        "applications": apps,
        "services": services,
        "images": images,
        "releases": releases,
        "devices": devices,
        "deltas": deltas,
    }
    save(out, "scenario.json", doc)
    print(f"scenario: {len(apps)} fleets, {len(images)} images, {len(releases)} releases, {len(deltas)} ready deltas")


def cases(out: Path) -> None:
    for index, case in enumerate(CASES):
        cid = case_ids(index)
        print(case["name"], f"--from-release {cid['from']} --to-release {cid['to']}", sep="\t")


# --- one case on a fresh engine ------------------------------------------------------------


class Proxy:
    def __init__(self, url: str):
        self.url = url

    def reset(self) -> None:
        expect(request("POST", f"{self.url}/__proxy/reset"), 200, "proxy reset")

    def records(self) -> list[dict]:
        return json.loads(expect(request("GET", f"{self.url}/__proxy/records"), 200, "proxy records").body)


def plan_of(case: dict) -> dict:
    """What the supervisor does, in order: which old images it removes before
    downloading, and which services it pulls (changed or new, by name)."""
    removals = []
    for name, key in sorted(case["from"].items()):
        target = case["to"].get(name)
        strategy = label(case, "to" if target else "from", name)
        if target is None and strategy in ("kill-then-download", "delete-then-download"):
            removals.append((name, key, f"removed service, {strategy}"))
        elif target is not None and target != key and strategy == "delete-then-download":
            removals.append((name, key, "delete-then-download"))
    pulls, unchanged = [], []
    for name, key in sorted(case["to"].items()):
        (unchanged if case["from"].get(name) == key else pulls).append((name, key))
    return {"removals": removals, "pulls": pulls, "unchanged": unchanged}


def run_case(out: Path, name: str, proxy_url: str) -> None:
    case = case_by_name(name)
    pushed = load(out, "pushed.json")["images"]
    proxy = Proxy(proxy_url)
    where = host_port(proxy_url)

    def ref(key: str) -> str:
        return f"{where}/{repository(key)}@{pushed[key]['digest']}"

    left = docker("images", "-aq").stdout.split()
    if left:
        raise StageError(f"{name}: the engine is not fresh, it holds {len(left)} images")
    t0 = time.monotonic()
    for service, key in sorted(case["from"].items()):
        docker("pull", "-q", ref(key))
    proxy.reset()
    plan = plan_of(case)
    result = {"case": name, "removed": [], "services": {}, "records": {}, "unchanged_local": {}}
    for service, key, why in plan["removals"]:
        docker("rmi", ref(key))
        gone = docker("image", "inspect", ref(key), check=False).returncode != 0
        result["removed"].append({"service": service, "why": why, "gone": gone})
    for service, key in plan["unchanged"]:
        # The supervisor finds it locally by digest and pulls nothing.
        result["unchanged_local"][service] = docker("image", "inspect", ref(key), check=False).returncode == 0
        result["services"][service] = 0
    engine = case.get("engine", True)
    pulls = plan["pulls"] if engine else []
    for service, key in pulls:
        docker("pull", "-q", ref(key))
        records = proxy.records()
        proxy.reset()
        result["records"][service] = records
        result["services"][service] = sum(r["bytes"] for r in records if r["counted"])
        layers = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref(key)).stdout)
        result.setdefault("complete", {})[service] = layers == pushed[key]["diff_ids"]
    if not engine:
        # No engine applies a delta; for the record, what a full pull of the
        # target would have cost instead (not compared with anything).
        for service, key in pulls or plan["pulls"]:
            docker("pull", "-q", ref(key))
            result.setdefault("full_pull", {})[service] = sum(r["bytes"] for r in proxy.records() if r["counted"])
            proxy.reset()
    result["engine"] = engine
    result["services"] = dict(sorted(result["services"].items()))
    result["total"] = sum(result["services"].values()) if engine else None
    save(out, f"engine-{name}.json", result)
    took = f"{time.monotonic() - t0:.1f} s"
    if engine:
        shown = ", ".join(f"{s} {b}" for s, b in result["services"].items())
        print(f"  {name}: engine fetched {result['total']} bytes ({shown}) in {took}")
    else:
        shown = ", ".join(f"{s} {b}" for s, b in result["full_pull"].items())
        print(f"  {name}: a delta decides (no engine applies one); a full pull instead fetched {shown} bytes, in {took}")


# --- the model, the old figure, the comparison ----------------------------------------------


class Image:
    """An image as the registry serves it."""

    def __init__(self, manifest: bytes, registry: str, repo: str):
        doc = json.loads(manifest)
        self.manifest_bytes = len(manifest)
        self.config_size = doc["config"]["size"]
        self.config_digest = doc["config"]["digest"]
        self.layers = [(l["digest"], l["size"]) for l in doc["layers"]]
        self.chains = chains([d for d, _ in self.layers])
        self.digest = digest_of(manifest)


def read_images(out: Path, registry: str) -> tuple[dict, dict]:
    pushed = load(out, "pushed.json")
    images = {}
    for key, info in pushed["images"].items():
        body, _ = get_manifest(registry, info["repository"], info["digest"])
        images[key] = Image(body, registry, info["repository"])
    deltas = {}
    for case, d in pushed.get("deltas", {}).items():
        body, _ = get_manifest(registry, d["repository"], d["tag"])
        deltas[case] = Image(body, registry, d["repository"])
    return images, deltas


def model(case: dict, images: dict, deltas: dict) -> dict:
    """The rule: a device holds every chain of every image it keeps; a pulled
    image costs its manifest, its config blob and the blobs of its layers
    above its longest held prefix; what was pulled earlier in the update is
    held for later images; an unchanged service costs 0; a ready delta costs
    its manifest, its config and its layers at positions whose target chain
    is not held; delete-then-download pulls without a delta."""
    plan = plan_of(case)
    removed = {key for _, key, _ in plan["removals"]}
    held = set()
    for key in case["from"].values():
        if key not in removed:
            held.update(images[key].chains)
    services = {name: 0 for name, _ in plan["unchanged"]}
    fetched = {name: [] for name, _ in plan["unchanged"]}
    detail = {}
    for name, key in plan["pulls"]:
        image = images[key]
        use_delta = case.get("delta") == name and label(case, "to", name) != "delete-then-download"
        if use_delta:
            delta = deltas[case["name"]]
            fetch = [i for i, chain in enumerate(image.chains) if chain not in held]
            cost = delta.manifest_bytes + delta.config_size + sum(delta.layers[i][1] for i in fetch)
            fetched[name] = sorted([delta.digest, delta.config_digest] + [delta.layers[i][0] for i in fetch])
            detail[name] = f"delta: manifest {delta.manifest_bytes} + config {delta.config_size} + layers at {fetch}"
        else:
            depth = max((i + 1 for i, chain in enumerate(image.chains) if chain in held), default=0)
            cost = image.manifest_bytes + image.config_size + sum(size for _, size in image.layers[depth:])
            fetched[name] = sorted([image.digest, image.config_digest] + [d for d, _ in image.layers[depth:]])
            detail[name] = f"pull: manifest {image.manifest_bytes} + config {image.config_size} + {len(image.layers) - depth} layers"
        services[name] = cost
        held.update(image.chains)
    return {"services": services, "total": sum(services.values()), "detail": detail, "fetched": fetched}


def old_figure(case: dict, images: dict, deltas: dict) -> dict:
    """The previous rule: distinct layer blobs of the target images that no
    image of the source release has, each counted once; a ready delta's
    layers instead of the image's; no manifests, no configs, no strategies."""
    source = {d for key in case["from"].values() for d, _ in images[key].layers}
    fetched: dict[str, int] = {}
    services = {}
    for name, key in sorted(case["to"].items()):
        if case["from"].get(name) == key:
            services[name] = 0
            continue
        if case.get("delta") == name:
            own = dict(deltas[case["name"]].layers)
            fetched.update(own)
            services[name] = sum(own.values())
            continue
        total = 0
        for digest, size in dict(images[key].layers).items():
            if digest in source or digest in fetched:
                continue
            fetched[digest] = size
            total += size
        services[name] = total
    return {"services": services, "total": sum(fetched.values())}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def check(self, ok: bool, what: str, why: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS {what}")
        else:
            self.failed += 1
            self.failures.append(what)
            print(f"FAIL {what}{': ' + why if why else ''}")
        return ok


def tool_output(out: Path, name: str) -> tuple[dict | None, str]:
    stem = out / "tool" / name
    code = (stem.with_suffix(".exit")).read_text().strip() if stem.with_suffix(".exit").exists() else "?"
    try:
        return json.loads(stem.with_suffix(".json").read_text()), code
    except (OSError, ValueError):
        return None, code


def served_delta_bytes(out: Path, registry: str, proxy: Proxy, case: dict, images: dict, deltas: dict) -> int:
    """GETs what the model says a device fetches of the delta, through the
    counting proxy: the manifest by tag, the config, the layers it needs."""
    d = load(out, "pushed.json")["deltas"][case["name"]]
    delta = deltas[case["name"]]
    plan = plan_of(case)
    removed = {key for _, key, _ in plan["removals"]}
    held = set()
    for key in case["from"].values():
        if key not in removed:
            held.update(images[key].chains)
    target = images[case["to"][case["delta"]]]
    proxy.reset()
    base = f"{proxy.url}/v2/{d['repository']}"
    expect(request("GET", f"{base}/manifests/{d['tag']}", headers={"Accept": ACCEPT}), 200, "delta manifest via proxy")
    expect(request("GET", f"{base}/blobs/{delta.config_digest}"), 200, "delta config via proxy")
    for i, chain in enumerate(target.chains):
        if chain not in held:
            expect(request("GET", f"{base}/blobs/{delta.layers[i][0]}"), 200, f"delta layer {i} via proxy")
    records = proxy.records()
    proxy.reset()
    return sum(r["bytes"] for r in records if r["counted"])


def report(out: Path, registry: str, proxy_url: str) -> None:
    images, deltas = read_images(out, registry)
    proxy = Proxy(proxy_url)
    c = Checks()
    rows = []

    # The fixture as served: config sizes are the blobs' lengths.
    bad = []
    for key, image in images.items():
        h = request("HEAD", f"{registry}/v2/{repository(key)}/blobs/{image.config_digest}")
        if h.headers.get("Content-Length") != str(image.config_size):
            bad.append(key)
    c.check(not bad, "fixture: every manifest's config.size is its config blob's length as served", f"{bad}")

    for case in CASES:
        name = case["name"]
        m = model(case, images, deltas)
        old = old_figure(case, images, deltas)
        tool, code = tool_output(out, name)
        engine = load(out, f"engine-{name}.json")
        print(f"--- {name}: {case['about']}")
        for service, text in m["detail"].items():
            print(f"    model {service}: {text} = {m['services'][service]}")

        # The engine's run itself.
        if engine["engine"]:
            records = [r for rs in engine["records"].values() for r in rs]
            counted = [r for r in records if r["counted"]]
            c.check(
                all(r["status"] == 200 and not r.get("aborted") and not r.get("error") for r in counted)
                and not any(300 <= (r["status"] or 0) < 400 for r in records),
                f"{name}: engine: every counted GET answered 200 in full, no redirect",
                json.dumps([r for r in records if r["status"] != 200 or r.get("aborted")])[:400],
            )
            c.check(
                all(engine.get("complete", {}).values()),
                f"{name}: engine: every pulled image is complete with its pushed layers",
                json.dumps(engine.get("complete")),
            )
            if engine["removed"]:
                c.check(all(r["gone"] for r in engine["removed"]), f"{name}: engine: strategy removals done first ({', '.join(r['service'] + ': ' + r['why'] for r in engine['removed'])})")
            if engine["unchanged_local"]:
                c.check(
                    all(engine["unchanged_local"].values()),
                    f"{name}: engine: unchanged services ({', '.join(engine['unchanged_local'])}) found locally by digest, nothing fetched",
                )
            c.check(
                m["total"] == engine["total"],
                f"{name}: model = engine, {m['total']} bytes",
                f"model {m['total']}, engine {engine['total']}",
            )
            c.check(
                m["services"] == engine["services"],
                f"{name}: model = engine per service {json.dumps(engine['services'], sort_keys=True)}",
                f"model {json.dumps(m['services'], sort_keys=True)}",
            )
            got = {
                service: sorted(r["path"].rsplit("/", 1)[1] for r in engine["records"].get(service, []) if r["counted"])
                for service in engine["services"]
            }
            c.check(
                m["fetched"] == got,
                f"{name}: model = engine, the same manifests and blobs fetched, each once",
                f"model {json.dumps(m['fetched'])}, engine {json.dumps(got)}",
            )
            truth = engine["total"]
            truth_services = engine["services"]
        else:
            served = served_delta_bytes(out, registry, proxy, case, images, deltas)
            service = case["delta"]
            c.check(
                served == m["services"][service],
                f"{name}: the delta blobs a device needs, served through the proxy = model, {served} bytes",
                f"served {served}, model {m['services'][service]}",
            )
            truth = m["total"]
            truth_services = m["services"]
            full = engine.get("full_pull", {})
            print(f"    for the record: a full pull of the target instead fetched {json.dumps(full)} bytes (engine)")

        # The CLI.
        tool_total = tool_services = None
        if tool is None:
            c.check(False, f"{name}: the CLI answered with JSON", f"exit {code}")
        else:
            updates = tool.get("is_produced_by__service_update", [])
            order = [u.get("service_name") for u in updates]
            c.check(order == sorted(order), f"{name}: the CLI lists services by name ({', '.join(order)})")
            tool_total = tool.get("estimated_download_size")
            tool_services = {u.get("service_name"): u.get("download_size") for u in updates}
            c.check(
                tool_total == truth,
                f"{name}: CLI estimated_download_size = {'engine' if engine['engine'] else 'model'}, {truth} bytes",
                f"the CLI says {tool_total}",
            )
            c.check(
                tool_services == truth_services,
                f"{name}: CLI download_size per service = {'engine' if engine['engine'] else 'model'} {json.dumps(truth_services, sort_keys=True)}",
                f"the CLI says {json.dumps(tool_services, sort_keys=True)}",
            )
        rows.append((name, engine["total"], m["total"], tool_total, old["total"], engine["engine"]))

    table = [
        "| case | bytes the engine fetched | model (new rule) | this tool's figure | previous digest-set figure |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, eng, mod, tool, old, pulled in rows:
        shown = f"{eng}" if pulled else "— (a delta: no engine applies it)"
        table.append(f"| {name} | {shown} | {mod} | {'—' if tool is None else tool} | {old} |")
    text = "\n".join(table) + "\n"
    (out / "table.md").write_text(text)
    print()
    print(text)
    print(f"{c.passed} passed, {c.failed} failed")
    if c.failed:
        sys.exit(1)


if __name__ == "__main__":
    args = sys.argv[1:]
    try:
        if args[:1] == ["write"] and len(args) == 2:
            write(Path(args[1]))
        elif args[:1] == ["build-push"] and len(args) == 3:
            build_push(Path(args[1]), args[2])
        elif args[:1] == ["push-deltas"] and len(args) == 3:
            push_deltas(Path(args[1]), args[2])
        elif args[:1] == ["scenario"] and len(args) == 2:
            scenario(Path(args[1]))
        elif args[:1] == ["cases"] and len(args) == 2:
            cases(Path(args[1]))
        elif args[:1] == ["case"] and len(args) == 4:
            run_case(Path(args[1]), args[2], args[3])
        elif args[:1] == ["report"] and len(args) == 4:
            report(Path(args[1]), args[2], args[3])
        else:
            sys.exit(__doc__)
    except StageError as e:
        print(f"FAIL {e}")
        sys.exit(1)
