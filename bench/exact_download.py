#!/usr/bin/env python3
"""The exact download against the npm-compatible estimate, and what reading
the registry costs in wall time and requests.

For a few transitions of the demo fleet and of a generated release pair, each
run against a fresh balena-sim with injected latency, this script reports:
the exact download (`estimated_download_size`, compressed layers a device
lacks), the npm-compatible estimate (image sizes, ready delta sizes), their
ratio, the median wall time with the registry and with `--no-registry`
(runs interleaved), and the requests of one run per server.

Standard library only (Python 3.11). It builds nothing: it expects
target/release/balena-release-update and target/release/balena-sim, as
bench/run.sh builds them. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- exact-download:start -->"
END = "<!-- exact-download:end -->"
# The host every built-in scenario's image locations name.
REGISTRY_HOST = "registry2.balena-cloud.com"
GENERATED = "generated:services=20,releases=3"

# (label, scenario, from release, to release)
TRANSITIONS = [
    ("demo 900813 → 900835", "demo", "900813", "900835"),
    ("demo 900813 → 900871", "demo", "900813", "900871"),
    ("demo 900835 → 900871", "demo", "900835", "900871"),
    ("generated, 20 services, release 2 → 3", GENERATED, "2", "3"),
]

WITH = "registry"
WITHOUT = "no-registry"

# Loopback never goes through a proxy.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """A run that failed or a figure that could not be taken."""


class Sim:
    """One balena-sim process with a fixed latency on every request to the
    API, the delta server and the registry."""

    def __init__(self, binary: Path, scenario: str, latency_ms: int, log: Path):
        latency = {"type": "latency", "fixed_ms": latency_ms}
        faults = {
            "seed": 1,
            "rules": [{"scope": "both", "fault": latency}, {"scope": "registry", "fault": latency}],
        }
        args = [str(binary), "--scenario", scenario, "--faults", json.dumps(faults)]
        self.err = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        try:
            info = json.loads(line)
            self.api_url = info["api_url"]
            self.delta_url = info["delta_url"]
            self.registry_url = info["registry_url"]
            self.token = info["token"]
        except (ValueError, KeyError) as e:
            self.stop()
            raise BenchError(f"the simulator did not report ready; see {log}") from e

    def counters(self) -> dict:
        """The counters per server and resource, plus the registry's 401
        challenges counted from the journal."""
        with OPENER.open(f"{self.api_url}/__sim/journal", timeout=30) as r:
            journal = json.loads(r.read())
        counters = journal["counters"]
        counters["registry_challenges"] = sum(
            1 for e in journal["entries"] if e["server"] == "registry" and e["status"] == 401
        )
        return counters

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


@dataclass
class Run:
    wall_s: float
    out: dict
    counters: dict


def npm_estimate(out: dict) -> int:
    """The npm-compatible figure for a device updating now: nothing for an
    unchanged service, the delta's size when it is ready, else the image's
    size (the library's `UpdateInfo::download_now`)."""
    total = 0
    for s in out["is_produced_by__service_update"]:
        if s.get("change") == "unchanged":
            continue
        image = s["produces__image"]
        delta = image.get("is_produced_by__delta")
        if s.get("status") == "ready" and isinstance(delta, dict) and "size" in delta:
            total += delta["size"]
        else:
            total += image.get("image_size", 0)
    return total


def run_once(cfg, scenario: str, src: str, dst: str, mode: str, work: Path) -> Run:
    shutil.rmtree(work, ignore_errors=True)
    home = work / "home"
    home.mkdir(parents=True)
    sim = Sim(cfg.sim_bin, scenario, cfg.latency_ms, work / "sim.err")
    try:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "NO_PROXY": "127.0.0.1,localhost",
            "BALENARC_API_URL": sim.api_url,
            "BALENARC_DELTA_URL": sim.delta_url,
            "BALENA_RELEASE_UPDATE_TOKEN": sim.token,
            "BALENA_RELEASE_UPDATE_REGISTRY_MAP": f"{REGISTRY_HOST}={sim.registry_url}",
        }
        cmd = [str(cfg.tool_bin), "--from-release", src, "--to-release", dst]
        if mode == WITHOUT:
            cmd.append("--no-registry")
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=home, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{scenario} {src}->{dst} {mode}: no exit after {e.timeout} s") from e
        wall = time.perf_counter() - started
        (work / "stdout").write_text(proc.stdout)
        (work / "stderr").write_text(proc.stderr)
        if proc.returncode != 0:
            raise BenchError(f"{scenario} {src}->{dst} {mode}: exit code {proc.returncode}; see {work}/stderr")
        try:
            out = json.loads(proc.stdout)
        except ValueError as e:
            raise BenchError(f"{scenario} {src}->{dst} {mode}: stdout is not JSON; see {work}/stdout") from e
        counters = sim.counters()
        (work / "counters.json").write_text(json.dumps(counters, indent=1))
        return Run(wall, out, counters)
    finally:
        sim.stop()


def requests_of(counters: dict) -> dict:
    api = counters.get("api", {})
    reg = counters.get("registry", {})
    token = api.get("token", 0)
    return {
        "odata": api.get("total", 0) - token,
        "token": token,
        "registry_total": reg.get("total", 0),
        "challenges": counters.get("registry_challenges", 0),
        "manifests": reg.get("manifests", 0),
        "blobs": reg.get("blobs", 0),
        "v2": reg.get("v2", 0),
        "delta_server": counters.get("delta", {}).get("total", 0),
    }


def measure(cfg, log) -> list[dict]:
    rows = []
    for label, scenario, src, dst in TRANSITIONS:
        walls = {WITH: [], WITHOUT: []}
        first = {}
        for i in range(cfg.runs):
            order = (WITH, WITHOUT) if i % 2 == 0 else (WITHOUT, WITH)
            for mode in order:
                tag = re.sub(r"[^a-z0-9]+", "-", f"{scenario}-{src}-{dst}-{mode}-{i}".lower())
                run = run_once(cfg, scenario, src, dst, mode, cfg.work / tag)
                walls[mode].append(run.wall_s)
                first.setdefault(mode, run)
                log(f"  {label} [{mode}] run {i + 1}: {run.wall_s * 1000:.0f} ms")
        out = first[WITH].out
        if out.get("download_size_unknown") or "estimated_download_size" not in out:
            raise BenchError(f"{label}: the exact download is unknown with the registry; see {cfg.work}")
        if "estimated_download_size" in first[WITHOUT].out:
            raise BenchError(f"{label}: --no-registry still wrote estimated_download_size")
        exact = out["estimated_download_size"]
        estimate = npm_estimate(out)
        if exact > estimate:
            log(f"  note: {label}: the exact download ({exact}) is above the npm-compatible figure ({estimate})")
        if estimate != npm_estimate(first[WITHOUT].out):
            raise BenchError(f"{label}: the npm-compatible figure differs between the two modes")
        services = out["is_produced_by__service_update"]
        rows.append(
            {
                "label": label,
                "scenario": scenario,
                "from": src,
                "to": dst,
                "overall_status": out.get("overall_status"),
                "services": len(services),
                "changed": sum(1 for s in services if s.get("change") != "unchanged"),
                "ready_deltas": sum(
                    1
                    for s in services
                    if s.get("change") != "unchanged"
                    and s.get("status") == "ready"
                    and isinstance(s["produces__image"].get("is_produced_by__delta"), dict)
                ),
                "exact": exact,
                "estimate": estimate,
                "total_payload": out.get("estimated_total_payload_size"),
                "wall_with": walls[WITH],
                "wall_without": walls[WITHOUT],
                "requests_with": requests_of(first[WITH].counters),
                "requests_without": requests_of(first[WITHOUT].counters),
            }
        )
    return rows


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return {
        "cpu": cpu,
        "nproc": out(["nproc"]) or str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "load": load,
        "commit": out(["git", "rev-parse", "--short", "HEAD"]),
    }


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def diff_ms(r: dict) -> float:
    return (statistics.median(r["wall_with"]) - statistics.median(r["wall_without"])) * 1000


def report(cfg, rows: list[dict], mach: dict) -> str:
    lines = []
    w = lines.append
    w("## Exact download and the registry's cost")
    w("")
    w("Written by `python3 bench/exact_download.py --write` (see bench/README.md); do not edit by hand.")
    w("")
    w(
        f"Machine: {mach['nproc']} cores ({mach['cpu']}), {mach['os']}, load average "
        f"{mach['load']} at the end; shared with other builds, so wall times are noisy. "
        f"Commit {mach['commit']}."
    )
    w("")
    w(
        f"Each run: a fresh `balena-sim` with {cfg.latency_ms} ms of latency on every request to the API, "
        "the delta server and the registry; `balena-release-update --from-release A --to-release B` "
        "(a plain run: no `--prepare`, no `--wait`), with the registry host mapped to the simulator's "
        f"registry (`BALENA_RELEASE_UPDATE_REGISTRY_MAP`). {cfg.runs} runs with the registry and "
        f"{cfg.runs} with `--no-registry`, interleaved; the wall times are medians. The deltas are as "
        "the scenario has them at start: on the demo, 900835 → 900871 has `main`'s delta ready and "
        "`api`'s not yet built, 900813 → 900835 has only a failed `main` delta; the generated fleet "
        "has no delta at all."
    )
    w("")
    w(
        "- **exact**: `estimated_download_size`, the compressed bytes of the layers a device updating "
        "now lacks (a ready delta's image layers for its service), each layer once;"
    )
    w(
        "- **npm-compatible**: what the npm tool's figure adds up for the same moment: 0 for an "
        "unchanged service, the delta's `size` when it is ready, else the target image's `image_size` "
        "(`estimated_total_payload_size` itself is written only once the update is ready)."
    )
    w("")
    w("| transition | status | changed / services | ready deltas | exact | npm-compatible | exact / npm | wall, registry | wall, `--no-registry` | difference |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = f"{r['exact'] / r['estimate'] * 100:.1f} %" if r["estimate"] else "—"
        w(
            f"| {r['label']} | {r['overall_status']} | {r['changed']} / {r['services']} | {r['ready_deltas']} "
            f"| {mb(r['exact'])} | {mb(r['estimate'])} | {ratio} | {ms(r['wall_with'])} | {ms(r['wall_without'])} "
            f"| {diff_ms(r):+.0f} ms ({diff_ms(r) / cfg.latency_ms:.1f} × latency) |"
        )
    w("")
    w(
        "The difference is what reading the registry adds to a plain run, also in units of the injected "
        "latency: each sequential round trip on the registry's side (the 401 challenge, the token, each "
        "wave of manifest requests) costs at least one."
    )
    w("")
    w("Requests of one run (the first of each mode), with the registry / with `--no-registry`:")
    w("")
    w(
        "| transition | OData API requests | registry token requests (API host) "
        "| registry: manifests (of which 401 challenges) | registry: other (`/v2/`, blobs) | delta server |"
    )
    w("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        a, b = r["requests_with"], r["requests_without"]
        w(
            f"| {r['label']} | {a['odata']} / {b['odata']} | {a['token']} / {b['token']} "
            f"| {a['manifests']} ({a['challenges']}) / {b['manifests']} ({b['challenges']}) "
            f"| {a['v2'] + a['blobs']} / {b['v2'] + b['blobs']} "
            f"| {a['delta_server']} / {b['delta_server']} |"
        )
    w("")
    w(
        "The OData column is the \"2 API requests per round\" figure (the release query and the delta "
        "query). The registry's token request goes to the API host as well and is counted on its own "
        "line, not among the OData requests. A manifest request answered with the 401 challenge is "
        "counted among the manifests; each manifest is then fetched once."
    )
    w("")
    w("Per-run wall times (ms), registry / `--no-registry`:")
    w("")
    for r in rows:
        a = ", ".join(f"{x * 1000:.0f}" for x in r["wall_with"])
        b = ", ".join(f"{x * 1000:.0f}" for x in r["wall_without"])
        w(f"- {r['label']}: {a} / {b}")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{START}\n{section}{END}\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail.lstrip("\n")
    else:
        if text and not text.endswith("\n"):
            text += "\n"
        text += ("\n" if text else "") + block
    path.write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs per mode and transition (5)")
    p.add_argument("--latency-ms", type=int, default=50, help="latency on every simulator request (50)")
    p.add_argument("--write", action="store_true", help="replace or append the section in BENCHMARKS.md")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="file --write edits")
    p.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release")
    cfg = p.parse_args()
    if cfg.runs < 1:
        print("error: --runs must be at least 1", file=sys.stderr)
        return 2
    cfg.tool_bin = cfg.bin_dir / "balena-release-update"
    cfg.sim_bin = cfg.bin_dir / "balena-sim"
    for b in (cfg.tool_bin, cfg.sim_bin):
        if not os.access(b, os.X_OK):
            print(f"error: {b} is missing; build it first with bench/run.sh or "
                  "`cargo build --release -p balena-release-update -p balena-sim`", file=sys.stderr)
            return 2
    cfg.work = Path(tempfile.mkdtemp(prefix="exact-download-"))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        rows = measure(cfg, log)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    section = report(cfg, rows, machine())
    print(section, end="")
    if cfg.write:
        write_section(cfg.output, section)
        log(f"wrote the section to {cfg.output}")
    shutil.rmtree(cfg.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
