#!/usr/bin/env python3
"""Benchmark harness: the npm tool @balena/release-update 0.1.0 against
balena-release-update, both driven against the local simulator (balena-sim)
with injected latency, run by run in alternating order.

Standard library only (Python 3.11). Usually started through bench/run.sh,
which builds the release binaries first. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "conformance"
NPM_BIN = CONFORMANCE / "node_modules" / "@balena" / "release-update" / "bin" / "balena-release-update.js"
PRELOAD = CONFORMANCE / "preload.js"
GNU_TIME = "/usr/bin/time"

NPM = "npm"
RUST = "rust"
TOOLS = (NPM, RUST)
TOOL_LABEL = {NPM: "npm 0.1.0", RUST: "balena-release-update"}
MODES = ("plain", "prepare", "wait")

# Loopback never goes through a proxy.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """A run that failed or a figure that could not be taken."""


# --- the simulator -----------------------------------------------------------


class Sim:
    """One balena-sim process, started fresh for every measured run so that
    no run finds the deltas of another."""

    def __init__(
        self,
        binary: Path,
        scenario: str,
        latency_ms: int,
        throughput: int | None,
        log: Path,
        hold_ms: int | None = None,
        rules: tuple = (),
    ):
        faults = {
            "seed": 1,
            "rules": [{"scope": "both", "fault": {"type": "latency", "fixed_ms": latency_ms}}, *rules],
        }
        args = [
            str(binary),
            "--scenario",
            scenario,
            "--faults",
            json.dumps(faults),
        ]
        if throughput is not None:
            args += ["--throughput", str(throughput)]
        if hold_ms is not None:
            args += ["--hold-ms", str(hold_ms)]
        self.err = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        try:
            info = json.loads(line)
            self.api_url = info["api_url"]
            self.delta_url = info["delta_url"]
            self.token = info["token"]
        except (ValueError, KeyError) as e:
            self.stop()
            raise BenchError(f"simulator did not report ready ({line!r}); see {log}") from e

    def _get(self, url: str, token: bool = False, method: str = "GET") -> object:
        req = urllib.request.Request(url, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with OPENER.open(req, timeout=30) as r:
            return json.loads(r.read())

    def counters(self) -> dict:
        return self._get(f"{self.api_url}/__sim/counters")

    def journal(self) -> list[dict]:
        """Every request so far, in the order the simulator answered them."""
        return self._get(f"{self.api_url}/__sim/journal")["entries"]

    def delta_rows(self) -> list[dict]:
        # The control endpoint is never faulted; this read is, but it is
        # taken after the measured process exited.
        url = f"{self.api_url}/v7/delta?$select=id,status,end_timestamp"
        return self._get(url, token=True)["d"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


# --- the tools ---------------------------------------------------------------


def pair_scenario(services: int) -> str:
    return f"generated:services={services},releases=3"


def tool_command(tool: str, rust_bin: Path, mode: str, timeout_s: int, releases: tuple[str, str] = ("2", "3")) -> list[str]:
    args = ["--from-release", releases[0], "--to-release", releases[1]]
    if mode == "prepare":
        args.append("--prepare")
    elif mode == "wait":
        args += ["--wait", "--timeout", str(timeout_s)]
    if tool == NPM:
        return ["node", "-r", str(PRELOAD), str(NPM_BIN), *args]
    # Like for like with the npm tool, which reads no registry; what the
    # registry costs is measured apart (bench/exact_download.py).
    return [str(rust_bin), "--no-registry", *args]


def tool_env(tool: str, sim: Sim, home: Path) -> dict:
    """A clean environment with a throw-away HOME (and working directory),
    as for the conformance stage."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "NO_PROXY": "127.0.0.1,localhost",
        "BALENARC_DELTA_URL": sim.delta_url,
    }
    if tool == NPM:
        data = home / "data"
        data.mkdir(exist_ok=True)
        (data / "token").write_text(sim.token)
        env["BALENARC_DATA_DIRECTORY"] = str(data)
        env["SIM_API_URL"] = sim.api_url
    else:
        env["BALENARC_API_URL"] = sim.api_url
        env["BALENA_RELEASE_UPDATE_TOKEN"] = sim.token
    return env


@dataclass
class Run:
    tool: str
    mode: str
    services: int
    wall_s: float
    rss_kib: int
    api: int
    delta_server: int
    rounds: int
    lag_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def per_round(self) -> float:
        return self.api / self.rounds


def rounds_of(tool: str, counters: dict) -> int:
    """Information rounds seen in the journal. The npm tool starts every
    round with two release GETs; this tool reads the releases once and the
    delta rows exactly once per round."""
    api = counters["api"]
    if tool == NPM:
        return api.get("release", 0) // 2
    return api.get("delta", 0)


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def check_output(tool: str, mode: str, services: int, stdout: str) -> None:
    try:
        out = json.loads(stdout)
    except ValueError as e:
        raise BenchError(f"{tool} {mode} services={services}: stdout is not JSON") from e
    updates = out.get("is_produced_by__service_update")
    if not isinstance(updates, list) or len(updates) != services:
        raise BenchError(f"{tool} {mode} services={services}: expected {services} service updates")
    if mode == "wait" and out.get("overall_status") != "ready":
        raise BenchError(f"{tool} wait services={services}: overall_status is not `ready`")


def measure(
    cfg,
    tool: str,
    mode: str,
    services: int,
    throughput: int | None,
    tag: str,
    scenario: str | None = None,
    releases: tuple[str, str] = ("2", "3"),
    hold_ms: int | None = None,
) -> Run:
    """Starts a fresh simulator, runs one tool once and reads the figures."""
    work = cfg.work / "runs" / f"{tag}-{mode}-s{services}-{tool}"
    shutil.rmtree(work, ignore_errors=True)
    home = work / "home"
    home.mkdir(parents=True)
    sim = Sim(cfg.sim_bin, scenario or pair_scenario(services), cfg.latency_ms, throughput, work / "sim.err", hold_ms)
    try:
        rss_file = work / "rss"
        command = tool_command(tool, cfg.rust_bin, mode, cfg.wait_timeout, releases)
        cmd = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *command]
        # stdout goes to a file: through a pipe the npm tool cuts its output
        # at 64 KiB (it exits before the pipe drains), which 100 services pass.
        started = time.perf_counter()
        try:
            with open(work / "stdout", "wb") as out:
                proc = subprocess.run(
                    cmd,
                    cwd=home,
                    env=tool_env(tool, sim, home),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    text=True,
                    timeout=cfg.wait_timeout + 60,
                )
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{tool} {mode} services={services}: no exit after {e.timeout} s") from e
        wall = time.perf_counter() - started
        exited_at = time.time()
        (work / "stderr").write_text(proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.splitlines()[-5:])
            raise BenchError(f"{tool} {mode} services={services}: exit code {proc.returncode}\n{tail}")
        check_output(tool, mode, services, (work / "stdout").read_text())
        counters = sim.counters()
        (work / "counters.json").write_text(json.dumps(counters))
        rounds = rounds_of(tool, counters)
        if rounds < 1:
            raise BenchError(f"{tool} {mode} services={services}: no information round in the journal")
        lag = None
        if mode == "wait":
            ready = [parse_time(r["end_timestamp"]) for r in sim.delta_rows() if r["status"] == "success"]
            if not ready:
                raise BenchError(f"{tool} wait services={services}: no successful delta in the simulator")
            lag = exited_at - max(ready)
        return Run(
            tool=tool,
            mode=mode,
            services=services,
            wall_s=wall,
            rss_kib=int(rss_file.read_text().strip().splitlines()[-1]),
            api=counters["api"]["total"],
            delta_server=counters["delta"]["total"],
            rounds=rounds,
            lag_s=lag,
            extra={"api_by_resource": counters["api"]},
        )
    finally:
        sim.stop()


def series(cfg, mode: str, services: int, runs: int, throughput: int | None, tag: str, log) -> dict:
    """`runs` runs of each tool, alternating which goes first."""
    results = {NPM: [], RUST: []}
    for i in range(runs):
        order = TOOLS if i % 2 == 0 else TOOLS[::-1]
        for tool in order:
            r = measure(cfg, tool, mode, services, throughput, f"{tag}{i}")
            results[tool].append(r)
            lag = f", ready→exit {r.lag_s:.2f} s" if r.lag_s is not None else ""
            log(
                f"  {tag}{mode} services={services} run {i + 1}/{runs} {tool}: {r.wall_s:.3f} s, "
                f"{r.rss_kib / 1024:.1f} MiB, {r.api} API requests in {r.rounds} round(s){lag}"
            )
    return results


# --- the long wait -----------------------------------------------------------


def long_wait(cfg, tool: str, services: int, window_s: float, out: dict, errors: list) -> None:
    """Runs `--wait` against deltas that never finish (the simulator builds
    at 1 byte per second, so the rows stay `running` with a fresh heartbeat)
    and counts the requests of the first `window_s` seconds of real time."""
    work = cfg.work / "runs" / f"longwait-s{services}-{tool}"
    shutil.rmtree(work, ignore_errors=True)
    home = work / "home"
    home.mkdir(parents=True)
    try:
        sim = Sim(cfg.sim_bin, pair_scenario(services), cfg.latency_ms, 1, work / "sim.err")
    except BenchError as e:
        errors.append(str(e))
        return
    try:
        timeout = int(window_s) + 120
        with open(work / "stdout", "wb") as so, open(work / "stderr", "wb") as se:
            started = time.monotonic()
            proc = subprocess.Popen(
                tool_command(tool, cfg.rust_bin, "wait", timeout),
                cwd=home,
                env=tool_env(tool, sim, home),
                stdin=subprocess.DEVNULL,
                stdout=so,
                stderr=se,
            )
            try:
                proc.wait(timeout=window_s)
                errors.append(f"{tool} long wait: exited early (code {proc.returncode}) after {time.monotonic() - started:.1f} s")
                return
            except subprocess.TimeoutExpired:
                pass
            counters = sim.counters()
            elapsed = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        (work / "counters.json").write_text(json.dumps(counters))
        out[tool] = {
            "window_s": elapsed,
            "api": counters["api"]["total"],
            "delta_server": counters["delta"]["total"],
            "rounds": rounds_of(tool, counters),
            "api_by_resource": counters["api"],
        }
    except Exception as e:  # noqa: BLE001 - reported as a failed figure
        errors.append(f"{tool} long wait: {e}")
    finally:
        sim.stop()


# --- the fleet -----------------------------------------------------------------

FLEET_SERVICES = 10
FLEET_RELEASES = 50
FLEET_DEVICES = 10_000
# The generated scenario has a single application, id 1.
FLEET_APP = "1"
FLEET_MODES = ("describe", "prepare", "wait")
# Devices spread evenly over all releases, so every release but the target is
# a source release; the npm tool needs one pair run for each.
FLEET_SOURCES = FLEET_RELEASES - 1
# The most API requests of a fleet's first round while its devices run at
# most 100 releases: the fleet with a device count, the counts per release
# and the pinned devices' rows, then the releases and the deltas.
FIRST_ROUND_LIMIT = 5


def fleet_scenario(devices: int, pinned_percent: int = 0) -> str:
    spec = f"generated:services={FLEET_SERVICES},releases={FLEET_RELEASES},devices={devices}"
    return spec + (f",pinned_percent={pinned_percent}" if pinned_percent else "")


FLEET_SCENARIO = fleet_scenario(FLEET_DEVICES)


@dataclass
class FleetExpect:
    """What a fleet's output must report, computed from the simulator's own
    tables (`balena-sim --dump-scenario`), not from the tool."""

    devices: int
    pairs: int
    on_target: int
    without_release: int
    pinned: int


_EXPECTED: dict[str, FleetExpect] = {}


def fleet_expect(cfg, scenario: str) -> FleetExpect:
    """Each device goes to its pin, else to the fleet's target; a transition
    is a distinct (running, target) pair with running ≠ target."""
    if scenario in _EXPECTED:
        return _EXPECTED[scenario]
    proc = subprocess.run(
        [str(cfg.sim_bin), "--scenario", scenario, "--dump-scenario"], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise BenchError(f"balena-sim --dump-scenario {scenario}: exit code {proc.returncode}: {proc.stderr.strip()}")
    dump = json.loads(proc.stdout)
    apps = [a for a in dump["applications"] if str(a["id"]) == FLEET_APP]
    if len(apps) != 1 or apps[0].get("should_be_running__release") is None:
        raise BenchError(f"{scenario}: no application {FLEET_APP} with a target release in the dump")
    target = apps[0]["should_be_running__release"]
    pairs, on_target, without, pinned = set(), 0, 0, 0
    devices = [d for d in dump["devices"] if str(d["belongs_to__application"]) == FLEET_APP]
    for d in devices:
        running, pin = d.get("is_running__release"), d.get("is_pinned_on__release")
        pinned += pin is not None
        to = pin if pin is not None else target
        if running is None:
            without += 1
        elif running == to:
            on_target += 1
        else:
            pairs.add((running, to))
    _EXPECTED[scenario] = FleetExpect(len(devices), len(pairs), on_target, without, pinned)
    return _EXPECTED[scenario]


@dataclass
class FleetRun:
    mode: str
    wall_s: float
    rss_kib: int
    api: int
    delta_server: int
    rounds: int
    transitions: int
    devices: int
    payload: int | None
    api_by_resource: dict
    # API requests answered before the first delta-server request: the
    # whole first round (its reads end before any delta is asked for).
    first_round: int = 0
    # The resources read after the first round.
    later_resources: list = field(default_factory=list)
    on_target: int = 0
    without_release: int = 0
    # Bytes the client received from the API (status lines, headers and
    # bodies), counted by a relay; None when the run went direct.
    bytes_received: int | None = None
    # The simulator's slowest API answer of the run (its latency included).
    slowest_answer_ms: float = 0.0


def check_fleet_output(mode: str, stdout: str, expect: FleetExpect) -> dict:
    """Every device is in a transition, on its target or without a release,
    and there is one transition per distinct (running, target) pair."""
    try:
        out = json.loads(stdout)
    except ValueError as e:
        raise BenchError(f"fleet {mode}: stdout is not JSON") from e
    transitions = out.get("transitions")
    if not isinstance(transitions, list) or len(transitions) != expect.pairs:
        got = len(transitions) if isinstance(transitions, list) else "no"
        raise BenchError(f"fleet {mode}: {got} transitions, expected {expect.pairs} distinct (running, target) pairs")
    for key in ("devices_on_target", "devices_without_release"):
        if not isinstance(out.get(key), int):
            raise BenchError(f"fleet {mode}: no `{key}` count")
    moving = sum(t.get("device_count", 0) for t in transitions)
    total = moving + out["devices_on_target"] + out["devices_without_release"]
    if total != expect.devices:
        raise BenchError(
            f"fleet {mode}: {moving} moving + {out['devices_on_target']} on target + "
            f"{out['devices_without_release']} without a release = {total} devices, expected {expect.devices}"
        )
    if mode == "wait":
        if out.get("overall_status") != "ready":
            raise BenchError("fleet wait: overall_status is not `ready`")
        if not isinstance(out.get("estimated_fleet_payload_size"), int):
            raise BenchError("fleet wait: no `estimated_fleet_payload_size`")
    return out


class ByteCounter:
    """A loopback TCP relay in front of the simulator's API that counts the
    bytes the client receives (HTTP status lines, headers and bodies as sent
    on the wire; the simulator compresses nothing)."""

    def __init__(self, upstream_url: str):
        rest = upstream_url.split("://", 1)[1]
        host, port = rest.rsplit(":", 1)
        self.upstream = (host, int(port.rstrip("/")))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.received = 0
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for src, dst, count in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, count), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if count:
                    with self.lock:
                        self.received += len(data)
        except OSError:
            pass
        finally:
            for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def fleet_measure(
    cfg,
    mode: str,
    tag: str,
    scenario: str = FLEET_SCENARIO,
    rules: tuple = (),
    count_bytes: bool = False,
) -> FleetRun:
    """Runs `balena-release-update --fleet` once against a fresh simulator
    holding the generated fleet; with `count_bytes`, through a relay that
    counts what the client receives from the API."""
    expect = fleet_expect(cfg, scenario)
    work = cfg.work / "runs" / f"fleet{tag}-{mode}"
    shutil.rmtree(work, ignore_errors=True)
    home = work / "home"
    home.mkdir(parents=True)
    sim = Sim(cfg.sim_bin, scenario, cfg.latency_ms, None, work / "sim.err", rules=rules)
    relay = ByteCounter(sim.api_url) if count_bytes else None
    try:
        args = ["--fleet", FLEET_APP]
        if mode == "prepare":
            args.append("--prepare")
        elif mode == "wait":
            args += ["--wait", "--timeout", str(cfg.wait_timeout)]
        rss_file = work / "rss"
        cmd = [GNU_TIME, "-f", "%M", "-o", str(rss_file), str(cfg.rust_bin), "--no-registry", *args]
        env = tool_env(RUST, sim, home)
        if relay:
            env["BALENARC_API_URL"] = relay.url
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=cfg.wait_timeout + 60,
            )
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"fleet {mode}: no exit after {e.timeout} s") from e
        wall = time.perf_counter() - started
        (work / "stdout").write_text(proc.stdout)
        (work / "stderr").write_text(proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.splitlines()[-5:])
            raise BenchError(f"fleet {mode} ({scenario}): exit code {proc.returncode}\n{tail}")
        out = check_fleet_output(mode, proc.stdout, expect)
        counters = sim.counters()
        journal = sim.journal()
        (work / "counters.json").write_text(json.dumps(counters))
        (work / "journal.json").write_text(json.dumps(journal))
        rounds = rounds_of(RUST, counters)
        if rounds < 1:
            raise BenchError(f"fleet {mode}: no information round in the journal")
        first_trigger = next((e["seq"] for e in journal if e["server"] == "delta"), None)
        api = [e for e in journal if e["server"] == "api"]
        first = [e for e in api if first_trigger is None or e["seq"] < first_trigger]
        later = [e for e in api if first_trigger is not None and e["seq"] > first_trigger]
        if len(api) != counters["api"]["total"]:
            raise BenchError(f"fleet {mode}: the journal lists {len(api)} API requests, the counters {counters['api']['total']}")
        return FleetRun(
            mode=mode,
            wall_s=wall,
            rss_kib=int(rss_file.read_text().strip().splitlines()[-1]),
            api=counters["api"]["total"],
            delta_server=counters["delta"]["total"],
            rounds=rounds,
            transitions=len(out["transitions"]),
            devices=sum(t["device_count"] for t in out["transitions"]) + out["devices_on_target"] + out["devices_without_release"],
            payload=out.get("estimated_fleet_payload_size"),
            api_by_resource=counters["api"],
            first_round=len(first),
            later_resources=sorted({e.get("resource") or "?" for e in later}),
            on_target=out["devices_on_target"],
            without_release=out["devices_without_release"],
            bytes_received=relay.received if relay else None,
            slowest_answer_ms=max(e["duration"] for e in api),
        )
    finally:
        if relay:
            relay.close()
        sim.stop()


def fleet(cfg, log) -> dict:
    """This tool's fleet modes, `cfg.runs` times each, then one pair of the
    same fleet with the npm tool (release 1 → the target), which has no fleet
    mode: what it needs for the whole fleet is that pair times the source
    releases."""
    ours: dict = {}
    for mode in FLEET_MODES:
        ours[mode] = []
        for i in range(cfg.runs):
            r = fleet_measure(cfg, mode, str(i))
            ours[mode].append(r)
            log(
                f"  fleet {mode} run {i + 1}/{cfg.runs}: {r.wall_s:.3f} s, {r.rss_kib / 1024:.1f} MiB, "
                f"{r.api} API requests in {r.rounds} round(s) ({r.first_round} in the first), "
                f"{r.delta_server} delta-server requests"
            )
    npm: dict = {}
    for mode in ("plain", "prepare"):
        npm[mode] = []
        for i in range(cfg.runs):
            r = measure(cfg, NPM, mode, FLEET_SERVICES, None, f"fleet{i}", FLEET_SCENARIO, ("1", str(FLEET_RELEASES)))
            npm[mode].append(r)
            log(
                f"  fleet, npm pair 1 → {FLEET_RELEASES}, {mode} run {i + 1}/{cfg.runs}: {r.wall_s:.3f} s, "
                f"{r.api} API requests, {r.delta_server} delta-server requests"
            )
    return {"ours": ours, "npm_pair": npm}


# --- fleet size: what the first round costs as the fleet grows ------------------


@dataclass
class ScaleCase:
    key: str
    devices: int
    pinned_percent: int = 0
    # The API refuses the device count, so every device row is read.
    no_count: bool = False

    @property
    def scenario(self) -> str:
        return fleet_scenario(self.devices, self.pinned_percent)

    @property
    def rules(self) -> tuple:
        # The first application read is the one asking for a count: a 500
        # makes the tool read every device for the rest of the run.
        if not self.no_count:
            return ()
        return ({"scope": "api", "path_prefix": "/v7/application", "limit": 1, "fault": {"type": "error", "status": 500, "body": ""}},)

    @property
    def label(self) -> str:
        text = f"{self.devices:,} devices"
        if self.pinned_percent:
            text += f", {self.pinned_percent} % pinned"
        if self.no_count:
            text += ", the API refuses to count (every device row read)"
        return text


SCALE_CASES = (
    ScaleCase("10k", 10_000),
    ScaleCase("100k", 100_000),
    ScaleCase("10k-pinned", 10_000, 10),
    ScaleCase("100k-pinned", 100_000, 10),
    ScaleCase("100k-rows", 100_000, no_count=True),
)


def scale(cfg, log) -> dict:
    """`--fleet` (describe: one round) on fleets of growing size, run by run
    in rotating order, `cfg.runs` direct runs each for the wall time, then
    one run through the byte-counting relay for the bytes received."""
    cases = [c for c in SCALE_CASES if not (cfg.smoke and c.no_count)]
    runs: dict = {c.key: [] for c in cases}
    for i in range(cfg.runs):
        for c in cases[i % len(cases):] + cases[: i % len(cases)]:
            r = fleet_measure(cfg, "describe", f"scale-{c.key}-{i}", c.scenario, c.rules)
            runs[c.key].append(r)
            log(f"  fleet size {c.label} run {i + 1}/{cfg.runs}: {r.wall_s:.3f} s, {r.rss_kib / 1024:.1f} MiB, {r.api} API requests")
    counted: dict = {}
    for c in cases:
        r = fleet_measure(cfg, "describe", f"scale-{c.key}-bytes", c.scenario, c.rules, count_bytes=True)
        counted[c.key] = r
        log(f"  fleet size {c.label}, through the relay: {r.bytes_received:,} bytes received in {r.api} API requests")
    pinned = {c.key: fleet_expect(cfg, c.scenario).pinned for c in cases}
    return {"cases": [vars(c) for c in cases], "pinned": pinned, "runs": runs, "bytes": counted}


# --- trigger wave: --prepare against a delta server that holds each trigger -----

# The delta server holds each trigger this long before answering "still
# building"; builds at 1 MB/s take at least ~18 s here, so every hold runs out.
WAVE_HOLD_MS = 2000
WAVE_THROUGHPUT = 1_000_000
# 50 services have 26 changed between release 2 and 3 of the generated
# scenario, 100 have 50.
WAVE_SERVICES = (50, 100)
WAVE_LIMITS = {WAVE_HOLD_MS: 1.3, 0: 0.5}


def wave(cfg, log) -> dict:
    """`--prepare` of both tools, alternating, with and without the hold."""
    out: dict = {}
    for hold in (WAVE_HOLD_MS, 0):
        out[hold] = {}
        for s in WAVE_SERVICES:
            res = {NPM: [], RUST: []}
            for i in range(cfg.runs):
                for tool in TOOLS if i % 2 == 0 else TOOLS[::-1]:
                    r = measure(cfg, tool, "prepare", s, WAVE_THROUGHPUT, f"wave{hold}-{i}", hold_ms=hold or None)
                    res[tool].append(r)
                    log(
                        f"  trigger wave, hold {hold} ms, {svc(s)}, run {i + 1}/{cfg.runs} {tool}: {r.wall_s:.3f} s, "
                        f"{r.delta_server} delta-server requests"
                    )
            out[hold][s] = res
    return out


# --- criterion -----------------------------------------------------------------

# What each micro-benchmark of crates/balena-release/benches/hot_paths.rs measures.
CRITERION_BENCHES = {
    "queries/pair": "building the two URLs of a pair's first round (release query, delta query)",
    "queries/fleet_50_releases": "the same for a fleet whose devices run 50 releases",
    "decode/releases_500_services": "decoding the release answer: two releases of 500 images each",
    "decode/deltas_500_services": "decoding the delta answer: 250 built deltas",
    "transition/pair_500_services": "finding both releases in the answer, matching 500 services by name",
    "transition/evaluate_500_services": "judging 500 services from the delta rows, the overall status and the download",
    "info_round/500_services": "a whole `get_update_info` round against the in-process simulator on loopback (its work included)",
    "serialize/500_services": "writing the result as the CLI's JSON",
}


def run_criterion(cfg, log) -> dict:
    """Runs the criterion micro-benchmarks and reads the medians they wrote
    (only estimates written by this run)."""
    started = time.time()
    log("criterion: cargo bench -p balena-release --bench hot_paths")
    with open(cfg.work / "criterion.log", "wb") as out:
        proc = subprocess.run(
            ["cargo", "bench", "-q", "-p", "balena-release", "--bench", "hot_paths"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        raise BenchError(f"cargo bench failed (exit code {proc.returncode}); see {cfg.work / 'criterion.log'}")
    root = cfg.target_dir / "criterion"
    figures = {}
    for path in sorted(root.glob("**/new/estimates.json")):
        if path.stat().st_mtime < started:
            continue
        name = str(path.parent.parent.relative_to(root))
        median = json.loads(path.read_text())["median"]
        figures[name] = {
            "median_ns": median["point_estimate"],
            "low_ns": median["confidence_interval"]["lower_bound"],
            "high_ns": median["confidence_interval"]["upper_bound"],
        }
    missing = [name for name in CRITERION_BENCHES if name not in figures]
    if missing:
        raise BenchError(f"criterion wrote no estimate for {', '.join(missing)}")
    for name, x in figures.items():
        log(f"  {name}: {duration(x['median_ns'])}")
    return figures


def duration(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


# --- figures -------------------------------------------------------------------


def med(values) -> float:
    return statistics.median(values)


def num(x: float) -> str:
    """At most two decimals, without trailing zeros."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def svc(n: int) -> str:
    return f"{n} service" if n == 1 else f"{n} services"


def fmt_ratio(ours: float, theirs: float) -> str:
    if theirs == 0:
        return "n/a"
    return f"{ours / theirs:.3f}"


def load_average() -> str | None:
    """The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them."""
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def machine(rust_bin: Path) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "node": out(["node", "--version"]),
        "rust_tool": out([str(rust_bin), "--version"]),
        "commit": out(["git", "rev-parse", "--short", "HEAD"]),
        "load": load_average(),
        "dirty": bool(out(["git", "status", "--porcelain", "--untracked-files=no"])),
    }


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    # None: the figure is shown but cannot be judged against the goal.
    met: bool | None

    def verdict(self) -> str:
        if self.met is None:
            return "not judged"
        return "met" if self.met else "**missed**"


def evaluate_targets(cfg, data) -> list[Target]:
    targets = []
    plain = data["series"]["plain"]
    per_round_all = [max(r.per_round for r in data["series"][m][s][RUST]) for m in MODES for s in data["series"][m]]
    worst = max(per_round_all)
    targets.append(Target("API requests per information round", "≤ 2 at every service count and mode", f"at most {worst:g}", worst <= 2))
    for s, limit in ((10, 1 / 3), (50, 1 / 5)):
        if s in plain:
            ratio = med(r.wall_s for r in plain[s][RUST]) / med(r.wall_s for r in plain[s][NPM])
            targets.append(Target(f"wall time, plain, {svc(s)}", f"≤ {limit:.3f} × npm", f"{ratio:.3f} × npm", ratio <= limit))
    peak = max(r.rss_kib for m in MODES for s in data["series"][m] for r in data["series"][m][s][RUST]) / 1024
    targets.append(Target("peak resident memory", "≤ 15 MiB", f"{peak:.1f} MiB (largest of all pair runs)", peak <= 15))
    for key, label in (("wait", "default build speed"), ("slow", "slow builds")):
        group = data["series"].get(key) if key == "wait" else data.get("slow")
        if not group:
            continue
        for s in group:
            lag = med(r.lag_s for r in group[s][RUST])
            targets.append(Target(f"last delta ready → exit, {svc(s)}, {label}", "≤ 2 s (median)", f"{lag:.2f} s", lag <= 2))
    lw = data.get("long_wait")
    if lw and NPM in lw and RUST in lw:
        ratio = (lw[RUST]["api"] / lw[RUST]["window_s"]) / (lw[NPM]["api"] / lw[NPM]["window_s"])
        if cfg.long_window >= LONG_WAIT_JUDGED:
            targets.append(
                Target(
                    f"API requests during a {window(cfg.long_window)} wait, {svc(cfg.long_services)}",
                    "≤ 1/3 of npm",
                    f"{ratio:.3f} × npm",
                    ratio <= 1 / 3,
                )
            )
        else:
            targets.append(
                Target(
                    f"API requests during a long wait, {svc(cfg.long_services)}",
                    f"≤ 1/3 of npm over {span(LONG_WAIT_JUDGED)}",
                    f"{ratio:.3f} × npm over {span(cfg.long_window)}: not comparable, both tools' "
                    f"first rounds dominate so short a window (the full run counts {span(LONG_WAIT_JUDGED)})",
                    None,
                )
            )
    targets += section_targets(data)
    return targets


def section_targets(data) -> list[Target]:
    """The targets of the fleet, fleet-size and trigger-wave sections (also
    what `--only` judges)."""
    targets = []
    fl = data.get("fleet")
    if fl:
        runs = [r for m in FLEET_MODES for r in fl["ours"][m]]
        worst = max(r.first_round for r in runs)
        later = sorted({x for r in runs for x in r.later_resources})
        targets.append(
            Target(
                f"fleet of {FLEET_DEVICES:,} devices: API requests of the first round",
                f"≤ {FIRST_ROUND_LIMIT} in every mode",
                f"at most {worst}",
                worst <= FIRST_ROUND_LIMIT,
            )
        )
        targets.append(
            Target(
                f"fleet of {FLEET_DEVICES:,} devices: later rounds",
                "read only the deltas",
                "read " + (", ".join(f"`{x}`" for x in later) or "nothing (no later round)"),
                later in ([], ["delta"]),
            )
        )
    sc = data.get("scale")
    if sc:
        cases = {c["key"]: ScaleCase(**c) for c in sc["cases"]}
        worst = max(r.api for runs in sc["runs"].values() for r in runs)
        biggest = max(c.devices for c in cases.values())
        targets.append(
            Target(
                f"fleets of up to {biggest:,} devices: API requests of the first round",
                f"≤ {FIRST_ROUND_LIMIT} in every case",
                f"at most {worst}",
                worst <= FIRST_ROUND_LIMIT,
            )
        )
        if "10k" in sc["bytes"] and "100k" in sc["bytes"]:
            small, big = sc["bytes"]["10k"].bytes_received, sc["bytes"]["100k"].bytes_received
            # A count of ten times the devices has one more digit per release.
            targets.append(
                Target(
                    "bytes received in the first round, 100,000 unpinned devices",
                    "≤ 1.05 × those of 10,000 (does not grow with unpinned devices)",
                    f"{big:,} against {small:,}: {big / small:.3f} ×",
                    big <= 1.05 * small,
                )
            )
    wv = data.get("wave")
    if wv:
        for hold, group in wv.items():
            for s, res in group.items():
                ratio = med(x.wall_s for x in res[RUST]) / med(x.wall_s for x in res[NPM])
                limit = WAVE_LIMITS[int(hold)]
                held = f"each trigger held {int(hold) / 1000:g} s" if int(hold) else "no hold"
                targets.append(
                    Target(f"wall time, `--prepare`, {svc(s)}, {held}", f"≤ {limit:g} × npm", f"{ratio:.3f} × npm", ratio <= limit)
                )
    return targets


# A long wait shorter than this is shown but not judged: over a short window
# both tools' first rounds, not their polling, make the count.
LONG_WAIT_JUDGED = 600.0


def span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} s"


def window(seconds: float) -> str:
    return f"{seconds / 60:g}-minute" if seconds >= 60 else f"{seconds:g}-second"


def write_report(cfg, data, path: Path) -> list[Target]:
    m = data["machine"]
    lines = []
    w = lines.append
    title = "Benchmarks" if not cfg.smoke else "Benchmarks (smoke run: one iteration, small counts, not figures to quote)"
    w(f"# {title}\n")
    w(f"Written by `bench/run.sh{' --smoke' if cfg.smoke else ''}` on {data['date']}. Do not edit by hand; see")
    w("[bench/README.md](bench/README.md) for what is measured and how.\n")
    w("## Machine and setup\n")
    load = f"; load average {m['load']} (1 / 5 / 15 min) when the run began" if m.get("load") else ""
    w(f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, {m['os']}{load}")
    w(f"- tools: `@balena/release-update` 0.1.0 on Node {m['node']} (installed and preloaded as in `conformance/`);")
    w(f"  `{m['rust_tool']}` (release build, commit `{m['commit']}`{', with uncommitted changes' if m['dirty'] else ''})")
    w(f"- simulator: `balena-sim --scenario generated:services=N,releases=3`, release 2 → 3, a fresh one per run,")
    w(f"  {cfg.latency_ms} ms of latency on every request to the API and to the delta server")
    w(f"- {cfg.runs} runs per tool and figure, the two tools alternating run by run (npm first on even runs);")
    w("  figures are medians, ratios are this tool's median over the npm tool's median from the same run")
    w("- peak resident memory: `/usr/bin/time -f %M` (the whole process: Node for the npm tool)")
    w("- requests: the simulator's counters after the run; a round is counted as two release GETs for the")
    w("  npm tool (it reads both releases every round) and one `/v7/delta` read for this tool (it reads the")
    w("  delta rows once per round; the releases only in round 1)\n")

    w("## Per mode\n")
    w("| mode | services | API requests / round (npm → ours) | API requests / run (npm → ours) | wall time, median (npm → ours) | ratio | peak RSS, median (npm → ours) | ratio |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in MODES:
        for s, res in data["series"][mode].items():
            n, r = res[NPM], res[RUST]
            w(
                f"| {mode} | {s} | {num(med(x.per_round for x in n))} → {num(med(x.per_round for x in r))} "
                f"| {med(x.api for x in n):g} → {med(x.api for x in r):g} "
                f"| {med(x.wall_s for x in n):.3f} s → {med(x.wall_s for x in r):.3f} s "
                f"| {fmt_ratio(med(x.wall_s for x in r), med(x.wall_s for x in n))} "
                f"| {med(x.rss_kib for x in n) / 1024:.1f} → {med(x.rss_kib for x in r) / 1024:.1f} MiB "
                f"| {fmt_ratio(med(x.rss_kib for x in r), med(x.rss_kib for x in n))} |"
            )
    w("")
    w("`--prepare` and `--wait` also send one delta-server request per delta asked for:")
    parts = []
    for mode in ("prepare", "wait"):
        for s, res in data["series"][mode].items():
            parts.append(f"{mode}, {svc(s)}: {med(x.delta_server for x in res[NPM]):g} → {med(x.delta_server for x in res[RUST]):g}")
    w("; ".join(parts) + " (npm → ours; the npm tool also asks for deltas of unchanged services).\n")

    w("## Readiness: last delta ready → process exit (`--wait`)\n")
    w("The moment the last delta became ready is the largest `end_timestamp` of the simulator's successful")
    w("delta rows (the simulator runs on the real clock); the exit is when the harness saw the process end.\n")
    w("| builds | services | npm: median (min–max) | ours: median (min–max) | ratio |")
    w("| --- | ---: | ---: | ---: | ---: |")
    groups = [("default speed (200 MB/s, every build under ~1.6 s)", data["series"]["wait"])]
    if data.get("slow"):
        groups.append((f"slow ({cfg.slow_throughput / 1e6:g} MB/s, builds up to ~{330 / (cfg.slow_throughput / 1e6):.0f} s)", data["slow"]))
    for label, group in groups:
        for s, res in group.items():
            n = [x.lag_s for x in res[NPM]]
            r = [x.lag_s for x in res[RUST]]
            w(
                f"| {label} | {s} | {med(n):.2f} s ({min(n):.2f}–{max(n):.2f}) | {med(r):.2f} s ({min(r):.2f}–{max(r):.2f}) "
                f"| {fmt_ratio(med(r), med(n))} |"
            )
    w("")

    lw = data.get("long_wait")
    if lw:
        w(f"## A long wait: {window(cfg.long_window)} window, {svc(cfg.long_services)}\n")
        w("Both tools run `--wait` at the same time, each against its own simulator whose delta builds never")
        w("finish (1 byte per second: the rows stay `running` with a fresh heartbeat, so both tools keep")
        w(f"waiting). Counted: every request of the first {cfg.long_window:g} s of **real** time (both tools sleep on")
        w("real time, so a scaled simulator clock would not shorten this), including round 1 and the delta")
        w("requests; then the tools are stopped.\n")
        w("| tool | window | API requests | per minute | rounds | delta-server requests |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for tool in TOOLS:
            x = lw[tool]
            w(f"| {TOOL_LABEL[tool]} | {x['window_s']:.1f} s | {x['api']} | {x['api'] / x['window_s'] * 60:.1f} | {x['rounds']} | {x['delta_server']} |")
        w("")
        if cfg.long_window < LONG_WAIT_JUDGED:
            w(f"**Not comparable:** over {cfg.long_window:g} s both tools' first rounds make most of the count (the npm tool")
            w("polls every 20 s, this tool polls quickly at first), so this ratio says nothing about a long wait;")
            w(f"the full run counts a {window(LONG_WAIT_JUDGED)} window, the figure to quote.\n")
        if cfg.long_concurrent:
            also = " and the fleet runs" if getattr(cfg, "fleet", False) else ""
            w(f"This window ran in the background while the `--wait` series above{also} were measured (those are")
            w("dominated by sleeping; the long wait adds a few requests per minute of load).\n")

    if data.get("fleet"):
        fleet_section(cfg, data["fleet"], w)
    if data.get("scale"):
        scale_section(cfg, data["scale"], w)
    if data.get("wave"):
        wave_section(cfg, data["wave"], w)

    if data.get("criterion"):
        w("## Micro-benchmarks (criterion)\n")
        w("`cargo bench -p balena-release --bench hot_paths`, run by the harness before the other figures: a")
        w("release with 500 services, 250 of them changed, every delta built (the simulator's answers are")
        w("fetched once, then decoded from memory). The steps go through the hidden `bench_support` module.\n")
        w("| benchmark | what | median | 95 % interval of the median |")
        w("| --- | --- | ---: | ---: |")
        known = [n for n in CRITERION_BENCHES if n in data["criterion"]]
        others = sorted(n for n in data["criterion"] if n not in CRITERION_BENCHES)
        for name in known + others:
            x = data["criterion"][name]
            w(f"| `{name}` | {CRITERION_BENCHES.get(name, '')} | {duration(x['median_ns'])} | {duration(x['low_ns'])} – {duration(x['high_ns'])} |")
        w("")

    targets = evaluate_targets(cfg, data)
    w("## Targets\n")
    w("| target | goal | measured | |")
    w("| --- | --- | --- | --- |")
    for t in targets:
        w(f"| {t.name} | {t.goal} | {t.measured} | {t.verdict()} |")
    w("")
    analysis = Path(__file__).resolve().parent / "analysis.md"
    if not cfg.smoke and analysis.exists():
        w(analysis.read_text().rstrip() + "\n")
    path.write_text("\n".join(lines))
    return targets


def fleet_section(cfg, fl: dict, w) -> None:
    ours, npm = fl["ours"], fl["npm_pair"]
    w(f"## A fleet: {FLEET_DEVICES:,} devices on {FLEET_RELEASES} releases of {FLEET_SERVICES} services\n")
    w(f"`balena-sim --scenario {FLEET_SCENARIO}`: one fleet whose devices run its {FLEET_RELEASES} releases")
    w(f"({FLEET_DEVICES // FLEET_RELEASES} devices each), none pinned, the last release its target, so {FLEET_SOURCES} distinct source releases; a fresh")
    w(f"simulator per run, the same {cfg.latency_ms} ms of latency. This tool runs `balena-release-update --fleet {FLEET_APP}`,")
    w(f"`--fleet {FLEET_APP} --prepare` and `--fleet {FLEET_APP} --wait`, {times(cfg.runs)} each. Requests are the simulator's")
    w("counters and journal after the run. The first round is every API request answered before the first")
    w("delta-server request (its reads all end before a delta is asked for); a later round reads only the")
    w("deltas: one `/v7/delta` query per 100 source releases while every transition has the same target")
    w("(`poll_deltas` in `crates/balena-release/src/prepare/mod.rs`; with several targets, as pinned devices")
    w("make, one query per 100 source and 100 target images), so here one request a round.\n")
    w("| mode | API requests / run, median (application + release + device + delta) | rounds | first round (largest of all runs) | later rounds read | delta-server requests | wall time, median (min–max) | peak RSS, median (max) |")
    w("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for mode in FLEET_MODES:
        runs = ours[mode]
        walls = [r.wall_s for r in runs]
        mid = sorted(runs, key=lambda r: r.api)[len(runs) // 2]
        parts = " + ".join(str(mid.api_by_resource.get(k, 0)) for k in ("application", "release", "device", "delta"))
        later = sorted({x for r in runs for x in r.later_resources})
        w(
            f"| {'plain' if mode == 'describe' else mode} | {med(r.api for r in runs):g} ({parts}) | {med(r.rounds for r in runs):g} "
            f"| {max(r.first_round for r in runs)} | {', '.join(f'`{x}`' for x in later) or '(no later round)'} "
            f"| {med(r.delta_server for r in runs):g} | {med(walls):.3f} s ({min(walls):.3f}–{max(walls):.3f}) "
            f"| {med(r.rss_kib for r in runs) / 1024:.1f} MiB ({max(r.rss_kib for r in runs) / 1024:.1f}) |"
        )
    w("")
    first = ours["describe"][0]
    payloads = sorted({r.payload for r in ours["wait"] if r.payload is not None})
    payload = f"; `estimated_fleet_payload_size` once ready: {', '.join(f'{p:,}' for p in payloads)} bytes" if payloads else ""
    w(f"Every run reports {first.transitions} transitions and {first.on_target:,} devices on their target (`devices_on_target`), together")
    w(f"{first.devices:,} devices, the fleet's count in the simulator's tables{payload}. The first round's")
    w("requests by resource: the fleet with the count of its devices without a release (`application`), the")
    w("devices that follow the fleet counted per release and the pinned devices' rows at the same time")
    w("(`release`, `device`), then the releases and the deltas at the same time (`release`, `delta`). The")
    w("release and delta queries take at most 100 release ids each, so a fleet whose devices run more than")
    w(f"100 distinct releases (this one: {FLEET_RELEASES}) needs one more of each per 100 releases, and its first round more")
    w(f"than {FIRST_ROUND_LIMIT} requests. `--wait` polls after a pause of 1.5 s at first (a tenth of the time waited, at")
    w("least 1.5 s); its rounds here: the first, one right after the delta requests, then the polls until")
    w("every build is done.\n")
    if ours.get("prepare"):
        n = med(r.delta_server for r in ours["prepare"])
        w(f"`--prepare` sends its {n:g} delta requests with up to 64 in flight (`PrepareOptions::trigger_concurrency`), so they")
        w(f"take about {math.ceil(n / 64)} delta-server latencies one after another (with 8 in flight: {math.ceil(n / 8)}).\n")

    n_plain, n_prep = npm["plain"], npm["prepare"]
    per_pair = med(r.api for r in n_plain)
    formula = 2 + 3 * FLEET_SERVICES
    pair_wall = med(r.wall_s for r in n_plain)
    prep_wall = med(r.wall_s for r in n_prep)
    pair_delta = med(r.delta_server for r in n_prep)
    w("**The npm tool has no fleet mode.** Covering this fleet takes one pair run per source release,")
    w(f"{FLEET_SOURCES} of them. Measured here: the pair release 1 → {FLEET_RELEASES} of the same simulator, {times(cfg.runs)} per mode;")
    w(f"every release has all {FLEET_SERVICES} services, so every one of the {FLEET_SOURCES} pairs costs the same, and the")
    w(f"fleet's figures below are that pair's medians times {FLEET_SOURCES} (estimated, not run).\n")
    w("| | one pair (measured) | the fleet: × " + str(FLEET_SOURCES) + " (estimated) | this tool, the whole fleet (measured) |")
    w("| --- | ---: | ---: | ---: |")
    w(
        f"| API requests, one round (plain) | {per_pair:g} (its formula 2 + 3 × {FLEET_SERVICES} shared services = {formula}) "
        f"| {per_pair * FLEET_SOURCES:,.0f} | {med(r.api for r in ours['describe']):g} |"
    )
    w(
        f"| delta-server requests, `--prepare` | {pair_delta:g} | {pair_delta * FLEET_SOURCES:,.0f} "
        f"| {med(r.delta_server for r in ours['prepare']):g} |"
    )
    w(
        f"| wall time, plain, runs one after another | {pair_wall:.3f} s | {pair_wall * FLEET_SOURCES:.1f} s "
        f"| {med(r.wall_s for r in ours['describe']):.3f} s |"
    )
    w(
        f"| wall time, `--prepare`, runs one after another | {prep_wall:.3f} s | {prep_wall * FLEET_SOURCES:.1f} s "
        f"| {med(r.wall_s for r in ours['prepare']):.3f} s |"
    )
    w("")
    w(f"With `--wait`, each of the {FLEET_SOURCES} pair processes would repeat its {per_pair:g}-request round every 20 s:")
    w(f"{per_pair * FLEET_SOURCES:,.0f} API requests every 20 s for the fleet, where this tool reads the delta rows once per poll.\n")


def scale_section(cfg, sc: dict, w) -> None:
    cases = [ScaleCase(**c) for c in sc["cases"]]
    w("## Fleet size: the first round from 10,000 to 100,000 devices\n")
    w(f"`balena-release-update --fleet {FLEET_APP}` (one round, nothing triggered) on generated fleets of {FLEET_RELEASES} releases of")
    w(f"{FLEET_SERVICES} services (`{fleet_scenario(100_000, 10)}` and the like), devices spread evenly")
    w("over the releases; `pinned_percent=10` pins every tenth device, half of them to the release they run,")
    w("half to the one before. A fresh simulator per run, the same latency; the cases run in rotating order,")
    w(f"{times(cfg.runs)} each, side by side in one run of the harness, so their ratios are the figures to compare on")
    w("a shared machine.\n")
    w("**Bytes received** are counted by a relay the harness puts between the tool and the simulator's API")
    w("(a loopback TCP forwarder, `ByteCounter` in `bench/harness.py`): every byte the API sent the client,")
    w("status lines and headers included (the simulator compresses nothing). The simulator's journal")
    w("records no response sizes. Bytes come from one extra run per case through the relay; the wall")
    w("times from the direct runs.\n")
    w("| fleet | transitions | on target | API requests (application + release + device + delta) | bytes received | wall time, median (min–max) | the simulator's slowest answer, median | peak RSS, median |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in cases:
        runs = sc["runs"][c.key]
        b = sc["bytes"][c.key]
        walls = [r.wall_s for r in runs]
        parts = " + ".join(str(b.api_by_resource.get(k, 0)) for k in ("application", "release", "device", "delta"))
        w(
            f"| {c.label} | {b.transitions} | {b.on_target:,} | {med(r.api for r in runs):g} ({parts}) | {b.bytes_received:,} "
            f"| {med(walls):.3f} s ({min(walls):.3f}–{max(walls):.3f}) | {med(r.slowest_answer_ms for r in runs):.0f} ms "
            f"| {med(r.rss_kib for r in runs) / 1024:.1f} MiB |"
        )
    w("")
    got = {c.key: (c, sc["bytes"][c.key], sc["runs"][c.key]) for c in cases}

    def ratio(a: str, b: str, fn) -> str:
        return f"{fn(got[a]) / fn(got[b]):.2f}" if fn(got[b]) else "n/a"

    nbytes = lambda x: x[1].bytes_received  # noqa: E731
    wall = lambda x: med(r.wall_s for r in x[2])  # noqa: E731
    slowest = lambda x: med(r.slowest_answer_ms for r in x[2])  # noqa: E731
    if "10k" in got and "100k" in got:
        w(f"Ten times the devices, none pinned: the same requests, {ratio('100k', '10k', nbytes)} × the bytes (the counts are one row")
        w(f"per release, whatever the number of devices behind them) and {ratio('100k', '10k', wall)} × the wall time. What grows is the")
        w(f"simulator's time to answer: its slowest answer takes {ratio('100k', '10k', slowest)} × as long (it counts by scanning every device")
        w("row, 50 ms of latency included), while this tool's memory stays the same.")
    if "10k-pinned" in got and "100k-pinned" in got:
        pinned10, pinned100 = got["10k-pinned"][1], got["100k-pinned"][1]
        w(f"A tenth pinned: {ratio('100k-pinned', '10k-pinned', nbytes)} × the bytes for ten times the pinned devices")
        w(f"({sc['pinned']['10k-pinned']:,} → {sc['pinned']['100k-pinned']:,}): the pinned devices are read row by row (their pins decide")
        w(f"their targets), so what the first round receives grows with them; the transitions ({pinned10.transitions} → {pinned100.transitions}) do not.")
    if "100k-rows" in got and "100k" in got:
        w(f"Without the count (an API that refuses `$count` in `$expand`), the 100,000 device rows make")
        w(f"{ratio('100k-rows', '100k', nbytes)} × the bytes of the counted first round and {ratio('100k-rows', '100k', wall)} × its wall time.")
    w("")


def wave_section(cfg, wv: dict, w) -> None:
    w(f"## Trigger wave: `--prepare` with the delta server holding each trigger {WAVE_HOLD_MS / 1000:g} s\n")
    w("`balena-sim --scenario generated:services=N,releases=3` (release 2 → 3, where 50 services have 26")
    w(f"changed, 100 have 50) with `--throughput {WAVE_THROUGHPUT}` (builds of at least ~18 s) and `--hold-ms {WAVE_HOLD_MS}`: the delta")
    w("server holds every trigger of a build in progress 2 s before answering \"still building\", as the")
    w("real one may. Both tools run `--prepare`, alternating, a fresh simulator per run, the same latency;")
    w("then the same without a hold. This tool sends every trigger of a round at once, up to 64 in flight")
    w("(`PrepareOptions::trigger_concurrency`), so the holds overlap; the npm tool sends all of its delta")
    w("requests at once (also those of unchanged services).\n")
    w("| hold | services | delta-server requests (npm → ours) | wall time, median (npm → ours) | ratio | goal |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for hold, group in wv.items():
        for s, res in group.items():
            n, r = res[NPM], res[RUST]
            w(
                f"| {int(hold) / 1000:g} s | {s} | {med(x.delta_server for x in n):g} → {med(x.delta_server for x in r):g} "
                f"| {med(x.wall_s for x in n):.3f} s → {med(x.wall_s for x in r):.3f} s "
                f"| {fmt_ratio(med(x.wall_s for x in r), med(x.wall_s for x in n))} | ≤ {WAVE_LIMITS[int(hold)]:g} × npm |"
            )
    w("")
    w("With the hold, each tool's wall time is one hold plus its round trips, as long as all triggers are in")
    w("flight at once (with 8 in flight, 26 changed services would take four holds one after another).")
    w("Without it, this tool's three steps (read, triggers, read) stand against Node's start-up and the npm")
    w("tool's 2 + 3 × services API requests.\n")


# --- a partial run (--only) ---------------------------------------------------

SECTIONS = ("fleet", "scale", "wave")
# Heading prefix of each section, and the first cell of its rows in the
# Targets table (also rows an earlier version of the section wrote).
SECTION_HEADINGS = {"fleet": "## A fleet:", "scale": "## Fleet size:", "wave": "## Trigger wave:"}
SECTION_TARGETS = {
    "fleet": ("| fleet of ",),
    "scale": ("| fleets of up to ", "| bytes received in the first round"),
    "wave": ("| wall time, `--prepare`",),
}
ANALYSIS_HEADING = "## What limits the figures"
ONLY_NOTE = "Re-measured by `bench/run.sh --only"


def blocks(text: str) -> list[list[str]]:
    """The report cut before every `## ` heading (the first block is the title)."""
    out: list[list[str]] = [[]]
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("## "):
            out.append([])
        out[-1].append(line)
    return out


def only_report(cfg, data, path: Path) -> list[Target]:
    """Writes the re-measured sections into the report at `path`: each
    replaces the section with the same heading (or goes before the
    micro-benchmarks and targets), its rows replace its rows in the Targets
    table, the analysis is taken from bench/analysis.md again, and a line
    under the title says what was re-measured, when and at which commit. A
    missing report is written with these sections only."""
    fresh: dict[str, list[str]] = {}
    for name, fn in (("fleet", fleet_section), ("scale", scale_section), ("wave", wave_section)):
        if data.get(name):
            lines: list[str] = []
            fn(cfg, data[name], lines.append)
            fresh[name] = "\n".join(lines).rstrip("\n").split("\n") + [""]
    targets = section_targets(data)
    rows = [f"| {t.name} | {t.goal} | {t.measured} | {t.verdict()} |" for t in targets]
    m = data["machine"]
    commit = f"`{m['commit']}`{' with uncommitted changes' if m['dirty'] else ''}"
    note = (
        f"{ONLY_NOTE} {','.join(cfg.only)}{' --smoke' if cfg.smoke else ''}` on {data['date']} ({m['rust_tool']}, commit {commit},"
        f" {cfg.runs} run{'s' if cfg.runs != 1 else ''} per figure, on {m['cpu']}, {m['cores']} cores, Node {m['node']}): "
        + ", ".join(f"“{SECTION_HEADINGS[n][3:-1]}”" for n in fresh)
        + " and their targets"
        + (f"; load average {m['load']} when it began (a shared machine: compare the ratios, measured side by side)" if m.get("load") else "")
        + ("; the other figures are from the run named above." if path.exists() else ".")
    )
    if path.exists():
        parts = blocks(path.read_text())
    else:
        parts = [["# Benchmarks", "", "Sections written by `bench/run.sh --only`; see [bench/README.md](bench/README.md).", ""]]
    # The title block: drop an earlier note, add this one.
    title = [line for line in parts[0] if not line.startswith(ONLY_NOTE)]
    while title and title[-1] == "":
        title.pop()
    parts[0] = title + ["", note, ""]
    for name, lines in fresh.items():
        at = next((i for i, b in enumerate(parts) if b[0].startswith(SECTION_HEADINGS[name])), None)
        if at is not None:
            parts[at] = lines
            continue
        before = next(
            (i for i, b in enumerate(parts) if b[0].startswith(("## Micro-benchmarks", "## Targets", ANALYSIS_HEADING))), len(parts)
        )
        parts.insert(before, lines)
    at = next((i for i, b in enumerate(parts) if b[0] == "## Targets"), None)
    if at is None:
        parts.append(["## Targets", "", "| target | goal | measured | |", "| --- | --- | --- | --- |", *rows, ""])
    else:
        drop = tuple(prefix for name in fresh for prefix in SECTION_TARGETS[name])
        table = [line for line in parts[at][1:] if line.strip() and not line.startswith(drop)]
        parts[at] = [parts[at][0], ""] + table + rows + [""]
    analysis = Path(__file__).resolve().parent / "analysis.md"
    at = next((i for i, b in enumerate(parts) if b[0].startswith(ANALYSIS_HEADING)), None)
    if at is not None and analysis.exists():
        parts[at] = analysis.read_text().rstrip("\n").split("\n") + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line for b in parts for line in b).rstrip("\n") + "\n")
    return targets


# --- main ----------------------------------------------------------------------

# The settings a report needs, kept in results.json so it can be written again.
CONFIG_KEYS = (
    "smoke",
    "runs",
    "services",
    "latency_ms",
    "long_window",
    "long_services",
    "slow_throughput",
    "long_concurrent",
    "fleet",
    "scale",
    "wave",
    "only",
    "criterion",
)


def report_from(results: Path, output: Path | None) -> int:
    """Writes the report again from a results.json (e.g. after editing
    bench/analysis.md), without measuring anything."""
    raw = json.loads(results.read_text())
    if raw.get("errors"):
        print(f"bench: error: {results} records a failed run", file=sys.stderr)
        return 1
    cfg = argparse.Namespace(**raw["config"])

    def group(g):
        return {int(s): {t: [Run(**r) for r in res[t]] for t in TOOLS} for s, res in g.items()}

    series = {m: group(raw["series"][m]) for m in MODES if m in raw["series"]}
    data = {"date": raw["date"], "machine": raw["machine"], "series": series, "long_wait": raw["long_wait"]}
    if "slow" in raw["series"]:
        data["slow"] = group(raw["series"]["slow"])
    if raw.get("criterion"):
        data["criterion"] = raw["criterion"]
    if raw.get("fleet"):
        fl = raw["fleet"]
        data["fleet"] = {
            "ours": {m: [FleetRun(**r) for r in runs] for m, runs in fl["ours"].items()},
            "npm_pair": {m: [Run(**r) for r in runs] for m, runs in fl["npm_pair"].items()},
        }
    if raw.get("scale"):
        sc = raw["scale"]
        data["scale"] = {
            "cases": sc["cases"],
            "pinned": sc["pinned"],
            "runs": {k: [FleetRun(**r) for r in runs] for k, runs in sc["runs"].items()},
            "bytes": {k: FleetRun(**r) for k, r in sc["bytes"].items()},
        }
    if raw.get("wave"):
        data["wave"] = {
            int(hold): {int(s): {t: [Run(**r) for r in res[t]] for t in TOOLS} for s, res in group.items()}
            for hold, group in raw["wave"].items()
        }
    out = output or (ROOT / "bench" / "out" / "BENCHMARKS.smoke.md" if cfg.smoke else ROOT / "BENCHMARKS.md")
    if getattr(cfg, "only", None):
        only_report(cfg, data, out)
    else:
        write_report(cfg, data, out)
    print(f"wrote {out}")
    return 0



def measure_sections(cfg, data: dict, log) -> None:
    """The fleet, fleet-size and trigger-wave figures, as asked for."""
    if cfg.fleet:
        log(f"fleet: {FLEET_SCENARIO}")
        data["fleet"] = fleet(cfg, log)
    if cfg.scale:
        log("fleet size: --fleet on 10,000 and 100,000 devices")
        data["scale"] = scale(cfg, log)
    if cfg.wave:
        log(f"trigger wave: --prepare, the delta server holding each trigger {WAVE_HOLD_MS} ms, then none")
        data["wave"] = wave(cfg, log)


def measure_all(cfg, data: dict, errors: list, log) -> None:
    """Every figure of a full (or smoke) run."""
    if cfg.criterion:
        data["criterion"] = run_criterion(cfg, log)
    for mode in ("plain", "prepare"):
        data["series"][mode] = {}
        for s in cfg.services:
            data["series"][mode][s] = series(cfg, mode, s, cfg.runs, None, "", log)

    log(f"long wait: {cfg.long_window:g} s, {cfg.long_services} services, both tools, in the background")
    long_out: dict = {}
    threads = [
        threading.Thread(target=long_wait, args=(cfg, tool, cfg.long_services, cfg.long_window, long_out, errors))
        for tool in TOOLS
    ]
    for t in threads:
        t.start()
    try:
        data["series"]["wait"] = {}
        for s in cfg.wait_services:
            data["series"]["wait"][s] = series(cfg, "wait", s, cfg.runs, None, "", log)
        if cfg.slow:
            data["slow"] = {10: series(cfg, "wait", 10, cfg.runs, cfg.slow_throughput, "slow", log)}
        measure_sections(cfg, data, log)
    finally:
        log("waiting for the long wait to end")
        for t in threads:
            t.join()
    if NPM in long_out and RUST in long_out:
        data["long_wait"] = long_out
        for tool in TOOLS:
            x = long_out[tool]
            log(f"  long wait {tool}: {x['api']} API requests in {x['window_s']:.1f} s ({x['api'] / x['window_s'] * 60:.1f}/min)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="one iteration, small counts, short long-wait window")
    p.add_argument("--runs", type=int, help="runs per tool and figure (default 5; smoke 1)")
    p.add_argument("--services", help="comma-separated service counts (default 1,10,50; smoke 1,3)")
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--long-window", type=float, help="seconds of the long wait (default 600; smoke 25)")
    p.add_argument("--long-services", type=int, help="services in the long wait (default 10; smoke 3)")
    p.add_argument("--slow-throughput", type=int, default=25_000_000, help="bytes/s of the slow-build series")
    p.add_argument("--no-slow", action="store_true", help="skip the slow-build series")
    p.add_argument("--no-fleet", action="store_true", help=f"skip the fleet figures ({FLEET_DEVICES} devices)")
    p.add_argument("--no-scale", action="store_true", help="skip the fleet-size figures (10,000 and 100,000 devices, first round)")
    p.add_argument("--no-wave", action="store_true", help=f"skip the trigger-wave figures (--prepare, delta server holding {WAVE_HOLD_MS} ms)")
    p.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"measure only these sections ({','.join(SECTIONS)}) and write them into the existing report, keeping its other figures",
    )
    p.add_argument("--no-criterion", action="store_true", help="skip the criterion micro-benchmarks (never run by the smoke)")
    p.add_argument("--output", type=Path, help="report path (default BENCHMARKS.md; smoke bench/out/BENCHMARKS.smoke.md)")
    p.add_argument("--target-dir", type=Path, default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")))
    p.add_argument("--report-from", type=Path, metavar="RESULTS_JSON", help="only write the report from an earlier run's results.json")
    cfg = p.parse_args()
    if cfg.report_from:
        return report_from(cfg.report_from, cfg.output)

    cfg.runs = cfg.runs or (1 if cfg.smoke else 5)
    cfg.services = [int(x) for x in (cfg.services or ("1,3" if cfg.smoke else "1,10,50")).split(",")]
    cfg.long_window = cfg.long_window or (25.0 if cfg.smoke else 600.0)
    cfg.long_services = cfg.long_services or (3 if cfg.smoke else 10)
    cfg.slow = not (cfg.no_slow or cfg.smoke)
    cfg.only = [x.strip() for x in cfg.only.split(",")] if cfg.only else None
    if cfg.only and not set(cfg.only) <= set(SECTIONS):
        print(f"bench: error: --only takes {', '.join(SECTIONS)} (comma-separated), got `{','.join(cfg.only)}`", file=sys.stderr)
        return 2
    cfg.fleet = "fleet" in cfg.only if cfg.only else not cfg.no_fleet
    cfg.scale = "scale" in cfg.only if cfg.only else not cfg.no_scale
    cfg.wave = "wave" in cfg.only if cfg.only else not cfg.no_wave
    cfg.criterion = not (cfg.no_criterion or cfg.smoke or cfg.only)
    cfg.wait_services = cfg.services[-1:] if cfg.smoke else cfg.services
    cfg.wait_timeout = 300
    cfg.long_concurrent = True
    cfg.output = cfg.output or (ROOT / "bench" / "out" / "BENCHMARKS.smoke.md" if cfg.smoke else ROOT / "BENCHMARKS.md")
    cfg.work = ROOT / "bench" / "out" / (("only-" if cfg.only else "") + ("smoke" if cfg.smoke else "full"))
    cfg.rust_bin = cfg.target_dir / "release" / "balena-release-update"
    cfg.sim_bin = cfg.target_dir / "release" / "balena-sim"
    for path, what in (
        (cfg.rust_bin, "cargo build --release"),
        (cfg.sim_bin, "cargo build --release -p balena-sim"),
        (NPM_BIN, "bash conformance/run.sh (it installs the npm tool)"),
        (PRELOAD, "conformance/preload.js"),
        (Path(GNU_TIME), "apt-get install time"),
    ):
        if not path.exists():
            print(f"bench: error: `{path}` is missing (see: {what})", file=sys.stderr)
            return 1
    if shutil.which("node") is None:
        print("bench: error: `node` is not on PATH", file=sys.stderr)
        return 1
    shutil.rmtree(cfg.work, ignore_errors=True)
    cfg.work.mkdir(parents=True)

    began = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {msg}", flush=True)

    data = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(cfg.rust_bin), "series": {}}
    errors: list[str] = []
    try:
        if cfg.only:
            measure_sections(cfg, data, log)
        else:
            measure_all(cfg, data, errors, log)
    except BenchError as e:
        errors.append(str(e))

    raw = {
        "date": data["date"],
        "machine": data["machine"],
        "series": {
            mode: {str(s): {t: [vars(r) for r in res[t]] for t in TOOLS} for s, res in group.items()}
            for mode, group in list(data["series"].items()) + ([("slow", data["slow"])] if data.get("slow") else [])
        },
        "long_wait": data.get("long_wait"),
        "fleet": {
            part: {mode: [vars(r) for r in runs] for mode, runs in modes.items()} for part, modes in data["fleet"].items()
        }
        if data.get("fleet")
        else None,
        "scale": {
            "cases": data["scale"]["cases"],
            "pinned": data["scale"]["pinned"],
            "runs": {k: [vars(r) for r in runs] for k, runs in data["scale"]["runs"].items()},
            "bytes": {k: vars(r) for k, r in data["scale"]["bytes"].items()},
        }
        if data.get("scale")
        else None,
        "wave": {
            str(hold): {str(s): {t: [vars(r) for r in res[t]] for t in TOOLS} for s, res in group.items()}
            for hold, group in data["wave"].items()
        }
        if data.get("wave")
        else None,
        "criterion": data.get("criterion"),
        "errors": errors,
        "config": {k: getattr(cfg, k) for k in CONFIG_KEYS},
    }
    (cfg.work / "results.json").write_text(json.dumps(raw, indent=2))

    if errors:
        for e in errors:
            print(f"bench: error: {e}", file=sys.stderr)
        print(f"bench: failed; runs kept in {cfg.work}", file=sys.stderr)
        return 1
    missing = [] if cfg.only else [
        f"{m} services={s}" for m in MODES for s in (cfg.wait_services if m == "wait" else cfg.services) if s not in data["series"].get(m, {})
    ]
    if "long_wait" not in data and not cfg.only:
        missing.append("long wait")
    missing += [name for name in SECTIONS if getattr(cfg, name) and name not in data]
    if cfg.criterion and "criterion" not in data:
        missing.append("criterion")
    if missing:
        print(f"bench: error: missing figures: {', '.join(missing)}", file=sys.stderr)
        return 1

    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    targets = only_report(cfg, data, cfg.output) if cfg.only else write_report(cfg, data, cfg.output)
    log(f"wrote {cfg.output}")
    for t in targets:
        tag = "n/a   " if t.met is None else ("met   " if t.met else "MISSED")
        print(f"  {tag} {t.name}: {t.measured} (goal {t.goal})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
