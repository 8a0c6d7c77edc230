"""Compares the CLI's download sizes against balena-sim's registry with those
against the real registry, case by case, and against the figures worked out
by hand from the fixture (README.md, "The fixture").

OUTPUTS holds, per case, `<case>.<registry>.json` (stdout),
`<case>.<registry>.exit` and `<case>.<registry>.requests` (`sim=N real=M`:
the manifest requests each registry saw during that run), for the
registries `sim` and `real`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stage import MISSING_IMAGES

SERVICE_KEYS = ("download_size", "pull_size", "download_size_unknown")
TRANSITION_KEYS = ("estimated_download_size", "download_size_unknown")
FLEET_KEYS = ("estimated_fleet_download_size", "download_size_unknown")
ALL_KEYS = {"download_size", "pull_size", "download_size_unknown", "estimated_download_size", "estimated_fleet_download_size"}

CASES = {
    "release-r1-r2": ["--from-release", "100", "--to-release", "101"],
    "release-r2-r3": ["--from-release", "101", "--to-release", "102"],
    "fleet": ["--fleet", "registry/registry-fleet"],
    "fleet-to-r2": ["--fleet", "registry/registry-fleet", "--to-release", "101"],
}

# Worked out by hand (README.md): per transition (from, to), per service,
# (download_size, pull_size) as the simulator's registry gives them; the
# real registry gives the same except for image 36, whose manifest it lacks.
EXPECTED = {
    (100, 101): {
        "api": (5888, 5888),
        "cache": (1152, 1152),
        "main": (1280, 2560),
        "proxy": (0, 0),
        "worker": (0, 0),
    },
    (101, 102): {
        "api": (1920, 1920),
        "cache": (0, 0),
        "main": (0, 0),
        "proxy": (0, 0),
        "worker": (1664, 1664),
    },
    (100, 102): {
        "api": (1920, 1920),
        "cache": (5248, 5248),
        "main": (1280, 2560),
        "proxy": (0, 0),
        "worker": (1664, 1664),
    },
}


class Result:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}")


def keys_anywhere(value) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ALL_KEYS:
                found.add(key)
            found |= keys_anywhere(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= keys_anywhere(inner)
    return found


def number(value):
    """A size as the JSON has it: a number, or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def transitions(doc: dict) -> list[dict]:
    return doc["transitions"] if "transitions" in doc else [doc]


def pick(obj: dict, keys) -> dict:
    return {k: obj[k] for k in keys if k in obj}


def compare_case(name: str, sim: dict, real: dict, r: Result) -> None:
    sim_t = {(t["originates_from__release"]["id"], t["produces__release"]["id"]): t for t in transitions(sim)}
    real_t = {(t["originates_from__release"]["id"], t["produces__release"]["id"]): t for t in transitions(real)}
    r.check(sim_t.keys() == real_t.keys(), f"{name}: transitions {sorted(sim_t)} (sim) vs {sorted(real_t)} (real)")
    any_missing = False
    for pair in sorted(sim_t.keys() & real_t.keys()):
        where = f"{name} {pair[0]}->{pair[1]}"
        s_services = {s["service_name"]: s for s in sim_t[pair]["is_produced_by__service_update"]}
        r_services = {s["service_name"]: s for s in real_t[pair]["is_produced_by__service_update"]}
        r.check(list(s_services) == list(r_services), f"{where}: services {list(s_services)} vs {list(r_services)}")
        missing_here = False
        for service in s_services.keys() & r_services.keys():
            s, x = s_services[service], r_services[service]
            image = s["produces__image"]["id"]
            sv, xv = pick(s, SERVICE_KEYS), pick(x, SERVICE_KEYS)
            r.check(
                "download_size" in sv and "pull_size" in sv and "download_size_unknown" not in sv,
                f"{where} {service}: against the simulator's registry the sizes are {sv or 'absent'}, expected both known",
            )
            if image in MISSING_IMAGES:
                missing_here = True
                r.check(
                    xv == {"download_size_unknown": True},
                    f"{where} {service}: image {image} has no manifest on the real registry, "
                    f"expected only download_size_unknown: true, got {xv or 'no size keys'}",
                )
            else:
                r.check(sv == xv, f"{where} {service}: {sv} (sim) vs {xv} (real)")
            want = EXPECTED.get(pair, {}).get(service)
            if want is not None and "download_size" in sv:
                got = (number(sv.get("download_size")), number(sv.get("pull_size")))
                r.check(got == want, f"{where} {service}: (download_size, pull_size) = {got}, worked out {want}")
        st, xt = pick(sim_t[pair], TRANSITION_KEYS), pick(real_t[pair], TRANSITION_KEYS)
        want_total = sum(d for d, _ in EXPECTED.get(pair, {}).values()) if pair in EXPECTED else None
        r.check(
            number(st.get("estimated_download_size")) == want_total and "download_size_unknown" not in st,
            f"{where}: estimated_download_size against the simulator's registry {st or 'absent'}, worked out {want_total}",
        )
        if missing_here:
            any_missing = True
            r.check(
                xt == {"download_size_unknown": True},
                f"{where}: a service's size is unknown on the real registry, expected only "
                f"download_size_unknown: true on the transition, got {xt or 'no size keys'}",
            )
        else:
            r.check(st == xt, f"{where}: {st} (sim) vs {xt} (real)")
    if "transitions" in sim:
        sf, xf = pick(sim, FLEET_KEYS), pick(real, FLEET_KEYS)
        want_fleet = sum(
            t["device_count"] * sum(d for d, _ in EXPECTED[p].values()) for p, t in sim_t.items() if p in EXPECTED
        )
        r.check(
            number(sf.get("estimated_fleet_download_size")) == want_fleet,
            f"{name}: estimated_fleet_download_size against the simulator's registry {sf or 'absent'}, worked out {want_fleet}",
        )
        if any_missing:
            r.check(
                "estimated_fleet_download_size" not in xf,
                f"{name}: a size is unknown on the real registry, yet estimated_fleet_download_size is {xf}",
            )
        else:
            r.check(sf == xf, f"{name}: {sf} (sim) vs {xf} (real)")


def main(outputs: Path) -> None:
    r = Result()
    docs: dict[tuple[str, str], dict] = {}
    for case in CASES:
        for registry in ("sim", "real"):
            stem = outputs / f"{case}.{registry}"
            code = Path(f"{stem}.exit").read_text().strip()
            r.check(code == "0", f"{case} against the {registry} registry: exit code {code}, expected 0 (see {stem}.stderr)")
            try:
                docs[case, registry] = json.loads(Path(f"{stem}.json").read_text())
            except (OSError, ValueError) as e:
                r.check(False, f"{case} against the {registry} registry: stdout is not JSON ({e})")
    if r.failed:
        print(f"FAIL the CLI did not complete every run: {r.passed} checks passed, {r.failed} failed")
        sys.exit(1)

    found = set().union(*(keys_anywhere(doc) for doc in docs.values()))
    if not found:
        print(
            "FAIL the CLI reports no download sizes yet: none of "
            + ", ".join(sorted(ALL_KEYS))
            + f" appears in any of the {len(docs)} outputs (both registries, {len(CASES)} cases)"
        )
        sys.exit(1)

    for case in CASES:
        # The runs must really have gone to the registry they were mapped to.
        for registry, other in (("sim", "real"), ("real", "sim")):
            counts = dict(
                part.split("=") for part in (outputs / f"{case}.{registry}.requests").read_text().split()
            )
            r.check(int(counts[registry]) > 0, f"{case}: the {registry} registry saw no manifest request in its own run")
            r.check(int(counts[other]) == 0, f"{case}: the {other} registry saw {counts[other]} manifest requests during the {registry} run")
        compare_case(case, docs[case, "sim"], docs[case, "real"], r)

    print(f"{'PASS' if not r.failed else 'FAIL'} download sizes, simulator vs real registry: {r.passed} checks passed, {r.failed} failed")
    if r.failed:
        sys.exit(1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
