"""Tests of compare.py on outputs built here in the CLI's JSON shape, so the
comparison is known to pass and to fail as it should before any CLI output
has sizes. Run: python3 -m unittest test_compare (from this directory)."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import unittest
from pathlib import Path

import compare
from stage import (
    DEVICES,
    IMAGES,
    MISSING_IMAGES,
    RELEASES,
    RENEWAL_DELTA,
    RENEWAL_FROM,
    RENEWAL_TO,
    SERVICES,
    delta_manifest,
    image_manifest,
)


def transition(src: int, dest: int, registry: str) -> dict:
    """One transition as the CLI would write it with sizes."""
    expected = compare.EXPECTED[src, dest]
    services = []
    unknown = False
    for image in sorted(RELEASES[dest][1], key=lambda i: SERVICES[IMAGES[i][0]]):
        name = SERVICES[IMAGES[image][0]]
        entry = {"service_name": name, "status": "ready", "produces__image": {"id": image}}
        if registry == "real" and image in MISSING_IMAGES:
            entry["download_size_unknown"] = True
            unknown = True
        else:
            entry["download_size"], entry["pull_size"] = expected[name]
        services.append(entry)
    doc = {
        "originates_from__release": {"id": src},
        "produces__release": {"id": dest},
        "is_produced_by__service_update": services,
        "overall_status": "ready",
    }
    if unknown:
        doc["download_size_unknown"] = True
    else:
        doc["estimated_download_size"] = sum(d for d, _ in expected.values())
    return doc


def fleet(target: int, registry: str) -> dict:
    counts: dict[int, int] = {}
    for release in DEVICES.values():
        if release != target:
            counts[release] = counts.get(release, 0) + 1
    transitions = [{"device_count": n, **transition(src, target, registry)} for src, n in sorted(counts.items())]
    doc = {"application": {"id": 10}, "transitions": transitions}
    if all("estimated_download_size" in t for t in transitions):
        doc["estimated_fleet_download_size"] = sum(t["device_count"] * t["estimated_download_size"] for t in transitions)
    return doc


def good_outputs() -> dict[tuple[str, str], dict]:
    docs = {}
    for registry in ("sim", "real"):
        docs["release-r1-r2", registry] = transition(100, 101, registry)
        docs["release-r2-r3", registry] = transition(101, 102, registry)
        docs["fleet", registry] = fleet(102, registry)
        docs["fleet-to-r2", registry] = fleet(101, registry)
    return docs


def run(docs, exits=None, requests=None) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for (case, registry), doc in docs.items():
            stem = f"{out}/{case}.{registry}"
            Path(f"{stem}.json").write_text(json.dumps(doc))
            Path(f"{stem}.exit").write_text(str((exits or {}).get((case, registry), 0)))
            default = "sim=3 real=0" if registry == "sim" else "sim=0 real=3"
            Path(f"{stem}.requests").write_text((requests or {}).get((case, registry), default))
        text = io.StringIO()
        code = 0
        with contextlib.redirect_stdout(text):
            try:
                compare.main(out)
            except SystemExit as e:
                code = e.code or 0
        return code, text.getvalue()


def strip_sizes(value):
    if isinstance(value, dict):
        return {k: strip_sizes(v) for k, v in value.items() if k not in compare.ALL_KEYS}
    if isinstance(value, list):
        return [strip_sizes(v) for v in value]
    return value


def service(doc: dict, name: str) -> dict:
    return next(s for s in doc["is_produced_by__service_update"] if s["service_name"] == name)


# README.md's table, worked by hand: (download_size, pull_size).
HAND = {
    (100, 101): {"api": (7220, 7220), "cache": (2520, 2520), "main": (2648, 3927), "proxy": (0, 0), "worker": (0, 0)},
    (101, 102): {"api": (2969, 2969), "cache": (0, 0), "main": (0, 0), "proxy": (0, 0), "worker": (2744, 2744)},
    (100, 102): {"api": (2969, 2969), "cache": (6616, 6616), "main": (2648, 3927), "proxy": (0, 0), "worker": (2744, 2744)},
}


class Model(unittest.TestCase):
    def test_the_model_gives_the_hand_worked_figures(self):
        self.assertEqual(compare.EXPECTED, HAND)

    def test_the_renewal_delta_counts_every_layer_of_its_own(self):
        # R2 -> R1: main's delta has one layer against the target's three.
        src, dest, _, _, layers = RENEWAL_DELTA
        got = compare.model(RENEWAL_FROM, RENEWAL_TO, {(src, dest): delta_manifest(src, dest, layers)[0]})
        self.assertEqual(got, {"main": (1990, 3415), "proxy": (0, 0), "worker": (0, 0)})

    def test_a_chain_pulled_earlier_in_the_update_is_held(self):
        # cache after api in R1 -> R2: api-mid came with api.
        cache = compare.Manifest(image_manifest(38)[0])
        self.assertEqual(compare.held_prefix(cache.digests, [compare.Manifest(image_manifest(30)[0]).digests]), 1)
        self.assertEqual(compare.held_prefix(cache.digests, [compare.Manifest(image_manifest(35)[0]).digests]), 2)

    def test_a_prefix_is_held_only_from_the_bottom(self):
        self.assertEqual(compare.held_prefix(["a", "b", "c"], [["x", "b", "c"]]), 0)
        self.assertEqual(compare.held_prefix(["a", "b", "c"], [["a", "x", "c"], ["a", "b"]]), 2)


class Compare(unittest.TestCase):
    def test_outputs_as_specified_pass(self):
        code, text = run(good_outputs())
        self.assertEqual(code, 0, text)
        self.assertIn("PASS download sizes", text)

    def test_outputs_without_size_keys_fail_with_the_message(self):
        docs = {k: strip_sizes(v) for k, v in good_outputs().items()}
        code, text = run(docs)
        self.assertEqual(code, 1)
        self.assertIn("the CLI reports no download sizes yet", text)

    def test_sizes_against_one_registry_only_fail(self):
        docs = good_outputs()
        for case in compare.CASES:
            docs[case, "real"] = strip_sizes(docs[case, "real"])
        code, text = run(docs)
        self.assertEqual(code, 1)
        self.assertIn("(real)", text)

    def test_a_different_size_fails(self):
        docs = good_outputs()
        service(docs["release-r1-r2", "real"], "cache")["pull_size"] = 5248
        code, text = run(docs)
        self.assertEqual(code, 1)
        self.assertIn("release-r1-r2 100->101 cache", text)

    def test_a_size_for_the_missing_manifest_fails(self):
        docs = good_outputs()
        api = service(docs["release-r2-r3", "real"], "api")
        del api["download_size_unknown"]
        api["download_size"] = api["pull_size"] = 1920
        code, text = run(docs)
        self.assertEqual(code, 1)
        self.assertIn("no manifest on the real registry", text)

    def test_figures_off_the_worked_ones_fail_even_when_both_agree(self):
        docs = good_outputs()
        for registry in ("sim", "real"):
            service(docs["release-r1-r2", registry], "main")["download_size"] = 2560
        code, text = run(docs)
        self.assertEqual(code, 1)
        self.assertIn("worked out (2648, 3927)", text)

    def test_a_failed_run_fails(self):
        code, text = run(good_outputs(), exits={("fleet", "real"): 1})
        self.assertEqual(code, 1)
        self.assertIn("fleet against the real registry: exit code 1", text)

    def test_a_run_that_did_not_reach_its_registry_fails(self):
        code, text = run(good_outputs(), requests={("fleet", "real"): "sim=2 real=0"})
        self.assertEqual(code, 1)
        self.assertIn("the real registry saw no manifest request", text)
        self.assertIn("the sim registry saw 2 manifest requests during the real run", text)

    def test_a_fleet_total_despite_an_unknown_size_fails(self):
        docs = good_outputs()
        docs["fleet", "real"]["estimated_fleet_download_size"] = 23808
        code, text = run(docs)
        self.assertEqual(code, 1)
        self.assertIn("estimated_fleet_download_size is", text)

    def test_the_good_outputs_are_not_trivially_equal(self):
        docs = good_outputs()
        self.assertNotEqual(docs["fleet", "sim"], docs["fleet", "real"])
        self.assertEqual(docs["fleet-to-r2", "sim"], docs["fleet-to-r2", "real"])


if __name__ == "__main__":
    unittest.main()
