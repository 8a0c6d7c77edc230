"""Tests of token_auth.py's checks on records built here, so that they are
known to pass and to fail as they should whatever the client does today.
Run: python3 -m unittest test_token_auth (from this directory)."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import unittest
from pathlib import Path

import token_auth as ta

REPO_A = "v2/" + "a" * 32
REPO_B = "v2/" + "b" * 32
TOKEN = "balena-token"


def token_request(*query, status=200, t=100.0) -> dict:
    return {"t": t, "method": "GET", "query": [list(q) for q in query], "status": status, "with_balena_token": True}


def proxied(path, authorization=None, t=100.5, stale=False, status=200, challenge=None) -> dict:
    return {"t": t, "method": "GET", "path": path, "authorization": authorization, "refused_as_stale": stale,
            "status": status, "challenge": challenge}


GOOD_TOKENS = [token_request(("service", ta.SERVICE), ("scope", f"repository:{REPO_A}:pull"), ("scope", f"repository:{REPO_B}:pull"))]
GOOD_PROXY = [
    proxied(f"/v2/{REPO_A}/manifests/sha256:1", status=401,
            challenge=f'Bearer realm="http://f/auth/v1/token",service="{ta.SERVICE}",scope="repository:{REPO_A}:pull"'),
    proxied(f"/v2/{REPO_A}/manifests/sha256:1", "Bearer x.y.z"),
    proxied(f"/v2/{REPO_B}/manifests/sha256:2", "Bearer x.y.z"),
]
SIZES = {"is_produced_by__service_update": [{"service_name": "main", "download_size": 10, "pull_size": 20}],
         "estimated_download_size": 10, "originates_from__release": {"id": 1}, "produces__release": {"id": 2}}


class TokenRequests(unittest.TestCase):
    def test_one_service_and_pull_scopes_of_read_repositories_pass(self):
        self.assertEqual(ta.token_request_problems(GOOD_TOKENS, GOOD_PROXY), [])

    def test_each_departure_is_named(self):
        cases = {
            "service parameters": token_request(("service", ta.SERVICE), ("service", ta.SERVICE), ("scope", f"repository:{REPO_A}:pull")),
            "other parameters": token_request(("service", ta.SERVICE), ("scope", f"repository:{REPO_A}:pull"), ("account", "x")),
            "not of the form": token_request(("service", ta.SERVICE), ("scope", "repository:*:*")),
            "never read": token_request(("service", ta.SERVICE), ("scope", f"repository:v2/{'c' * 32}:pull")),
            "no scope": token_request(("service", ta.SERVICE)),
        }
        for words, record in cases.items():
            problems = ta.token_request_problems([record], GOOD_PROXY)
            self.assertTrue(any(words in p for p in problems), (words, problems))

    def test_the_service_is_the_challenges(self):
        challenged = [dict(GOOD_PROXY[0], challenge='Bearer realm="http://f/auth/v1/token",service="elsewhere"')] + GOOD_PROXY[1:]
        problems = ta.token_request_problems(GOOD_TOKENS, challenged)
        self.assertTrue(any("expected exactly ['elsewhere']" in p for p in problems), problems)

    def test_push_is_not_pull(self):
        record = token_request(("service", ta.SERVICE), ("scope", f"repository:{REPO_A}:pull,push"))
        self.assertTrue(ta.token_request_problems([record], GOOD_PROXY))


def write_run(out: Path, stem: str, doc, tokens, proxy, code=0) -> None:
    (out / f"{stem}.json").write_text(json.dumps(doc))
    (out / f"{stem}.exit").write_text(str(code))
    (out / f"{stem}.tokens.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tokens))
    (out / f"{stem}.proxy.jsonl").write_text("".join(json.dumps(p) + "\n" for p in proxy))


def run_checks(hostile_tokens=None, renewal_tokens=None, leak=False) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_run(out, "c.real", SIZES, [], [])
        proxy = GOOD_PROXY + ([proxied(f"/v2/{REPO_A}/manifests/sha256:1", f"Bearer {TOKEN}")] if leak else [])
        write_run(out, "c.token", SIZES, GOOD_TOKENS, proxy)
        hostile_proxy = [dict(GOOD_PROXY[0], challenge=f'Bearer realm="http://f/auth/v1/token?{ta.HOSTILE_QUERY}"')] + GOOD_PROXY[1:]
        write_run(out, "c.hostile", SIZES, hostile_tokens or GOOD_TOKENS, hostile_proxy)
        late = [proxied(f"/v2/{REPO_A}/manifests/sha256:1", "Bearer x.y.z", t=109.0, stale=True, status=401)]
        write_run(out, "renewal", SIZES, renewal_tokens or GOOD_TOKENS + [dict(GOOD_TOKENS[0], t=109.1)], GOOD_PROXY + late)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            r = ta.checks(out, TOKEN, ["c"], ["c"], "renewal")
        return r.failed, text.getvalue()


class Checks(unittest.TestCase):
    def test_good_records_pass(self):
        failed, text = run_checks()
        self.assertEqual(failed, 0, text)
        self.assertIn("0 failed", text.splitlines()[-1])

    def test_the_realms_scopes_reaching_the_front_fail(self):
        leaked = [token_request(("service", ta.SERVICE), ("service", ta.SERVICE), ("scope", "repository:*:*"),
                                ("scope", "repository:v2/other:pull,push"), ("scope", f"repository:{REPO_A}:pull"))]
        failed, text = run_checks(hostile_tokens=leaked)
        self.assertEqual(failed, 1, text)
        for words in ("repository:*:*", "asks for push", "v2/other", "2 service parameters"):
            self.assertIn(words, text)

    def test_no_new_token_after_a_stale_one_fails(self):
        failed, text = run_checks(renewal_tokens=GOOD_TOKENS)
        self.assertEqual(failed, 1, text)
        self.assertIn("FAIL renewal: a new token", text)

    def test_the_balena_token_at_the_proxy_fails(self):
        failed, text = run_checks(leak=True)
        self.assertIn("FAIL the balena token never reached", text)


class Tokens(unittest.TestCase):
    def test_the_kid_is_libtrusts_shape(self):
        kid = ta.libtrust_kid(b"any DER bytes")
        self.assertRegex(kid, r"^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$")

    def test_claims_of_a_jwt_and_of_other_text(self):
        body = ta.b64url(json.dumps({"iat": 5}).encode())
        self.assertEqual(ta.jwt_claims(f"e30.{body}.sig"), {"iat": 5})
        self.assertIsNone(ta.jwt_claims("an-api-key"))


if __name__ == "__main__":
    unittest.main()
