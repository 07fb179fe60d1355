"""GitHub's leaked-token reports, against a real key server on loopback.

The key server is a small HTTP server in a thread serving generated P-256 keys in
GitHub's format; reports are signed with ``cryptography`` as GitHub signs them.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.api.conftest import Service, ServiceFactory
from tests.api.github_keys import GitHubKey, KeyServer
from trustpub.api import secret_scanning
from trustpub.api.scanning_keys import ScanningKeys
from trustpub.config import SecretScanningSettings
from trustpub.registry import Registry
from trustpub.tokens import REGISTRY_TOKENS, TRUSTPUB_TOKENS
from trustpub.web import paths

GITHUB_TYPE = "trustpub_token"


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.stop()


@pytest.fixture
def github_key(key_server: KeyServer) -> GitHubKey:
    key = GitHubKey("a" * 64)
    key_server.keys.append(key)
    return key


def scanning(key_server: KeyServer, **changes: Any) -> SecretScanningSettings:
    return SecretScanningSettings(key_url=key_server.url, development=True, **changes)


@pytest.fixture
def service(service_factory: ServiceFactory, key_server: KeyServer) -> Service:
    return service_factory(registry_enabled=True, secret_scanning=scanning(key_server))


def report(*tokens: str, type: str = GITHUB_TYPE) -> bytes:
    return json.dumps(
        [
            {
                "token": t,
                "type": type,
                "url": "https://github.com/o/r/blob/x/f",
                "source": "content",
            }
            for t in tokens
        ]
    ).encode()


def post(
    service: Service, body: bytes, key: GitHubKey | None, identifier: str | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["GITHUB-PUBLIC-KEY-IDENTIFIER"] = identifier or key.identifier
        headers["GITHUB-PUBLIC-KEY-SIGNATURE"] = key.sign(body)
    response: httpx.Response = service.client.post(
        paths.LEAK_REPORTS, content=body, headers=headers
    )
    return response


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def registry_of(service: Service) -> Registry:
    registry: Registry = service.client.app.state.cargo_registry  # type: ignore[attr-defined]
    return registry


def registry_token(service: Service, login: str = "alice") -> str:
    db = registry_of(service).db
    if login not in {u.login for u in db.users()}:
        db.add_user(login)
    token = REGISTRY_TOKENS.generate()
    db.add_token(login, "laptop", REGISTRY_TOKENS.hash(token), ["publish-update"], [], None)
    return token


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "trustpub.audit" and r.fields.get("event") == "leaked_token"  # type: ignore[attr-defined]
    ]


# -- revocation ---------------------------------------------------------------------------


def test_a_reported_trustpub_token_is_revoked_and_labelled_true_positive(
    service: Service, github_key: GitHubKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = service.token()
    assert service.introspect(token).json()["active"] is True
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        response = post(service, report(token), github_key)
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"token_hash": sha256(token), "token_type": GITHUB_TYPE, "label": "true_positive"}
    ]
    assert token not in response.text
    assert service.introspect(token).json() == {"active": False}
    (line,) = audit_lines(caplog)
    assert line["kind"] == "trustpub"
    assert line["outcome"] == "revoked"
    assert line["repository"] == "octo-org/octo-lib"
    assert line["token_hash"] == sha256(token)[:12]
    assert token not in caplog.text


def test_a_reported_registry_token_is_revoked_and_labelled_true_positive(
    service: Service, github_key: GitHubKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = registry_token(service)
    kept = registry_token(service)
    db = registry_of(service).db
    assert db.use_token(REGISTRY_TOKENS.hash(token)) is not None
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        response = post(service, report(token, type="trustpub_registry_token"), github_key)
    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "token_hash": sha256(token),
            "token_type": "trustpub_registry_token",
            "label": "true_positive",
        }
    ]
    assert db.use_token(REGISTRY_TOKENS.hash(token)) is None
    assert db.use_token(REGISTRY_TOKENS.hash(kept)) is not None  # only the reported one
    (line,) = audit_lines(caplog)
    assert (line["kind"], line["outcome"], line["user"]) == ("registry", "revoked", "alice")
    assert token not in caplog.text
    # Reported again: still a real token of ours, already revoked.
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        again = post(service, report(token), github_key)
    assert again.json()[0]["label"] == "true_positive"
    assert audit_lines(caplog)[-1]["outcome"] == "already_revoked"


def test_unknown_and_foreign_tokens_are_false_positives(
    service: Service, github_key: GitHubKey
) -> None:
    unknown = [TRUSTPUB_TOKENS.generate(), REGISTRY_TOKENS.generate(), "ghp_notours", "trustpub_x"]
    response = post(service, report(*unknown), github_key)
    assert response.status_code == 200, response.text
    assert [a["label"] for a in response.json()] == ["false_positive"] * 4
    assert [a["token_hash"] for a in response.json()] == [sha256(t) for t in unknown]


def test_a_batch_revokes_each_token_and_a_duplicate_once(
    service: Service, github_key: GitHubKey
) -> None:
    first, second, reg = service.token(), service.token(), registry_token(service)
    response = post(service, report(first, second, reg, first), github_key)
    assert [a["label"] for a in response.json()] == ["true_positive"] * 4
    for token in (first, second):
        assert service.introspect(token).json() == {"active": False}
    assert registry_of(service).db.use_token(REGISTRY_TOKENS.hash(reg)) is None


def test_without_the_registry_registry_tokens_get_no_label(
    service_factory: ServiceFactory,
    key_server: KeyServer,
    github_key: GitHubKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = service_factory(registry_enabled=False, secret_scanning=scanning(key_server))
    trustpub_token, reg = service.token(), REGISTRY_TOKENS.generate()
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        response = post(service, report(reg, trustpub_token), github_key)
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"token_hash": sha256(trustpub_token), "token_type": GITHUB_TYPE, "label": "true_positive"}
    ]
    assert [line["outcome"] for line in audit_lines(caplog)] == ["not_checked", "revoked"]


def test_disabled_the_endpoint_is_not_found(
    service_factory: ServiceFactory, key_server: KeyServer, github_key: GitHubKey
) -> None:
    service = service_factory(secret_scanning=scanning(key_server, enabled=False))
    token = service.token()
    assert post(service, report(token), github_key).status_code == 404
    assert service.introspect(token).json()["active"] is True
    assert key_server.requests == 0


# -- refusals: nothing revoked ------------------------------------------------------------


def refused(service: Service, token: str, response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert "errors" in response.json()
    assert token not in response.text
    assert service.introspect(token).json()["active"] is True


def test_an_unsigned_report_is_refused(
    service: Service, key_server: KeyServer, github_key: GitHubKey
) -> None:
    token = service.token()
    refused(service, token, post(service, report(token), None), 400)
    assert key_server.requests == 0


def test_a_wrong_signature_is_refused(service: Service, github_key: GitHubKey) -> None:
    token = service.token()
    body = report(token)
    forger = GitHubKey(github_key.identifier)  # claims GitHub's identifier, own key
    refused(service, token, post(service, body, forger), 401)
    # Signed by GitHub, but over another body.
    headers = {
        "GITHUB-PUBLIC-KEY-IDENTIFIER": github_key.identifier,
        "GITHUB-PUBLIC-KEY-SIGNATURE": github_key.sign(report("something else")),
    }
    response = service.client.post(paths.LEAK_REPORTS, content=body, headers=headers)
    refused(service, token, response, 401)
    for bad in ("not base64!", "AAAA", base64.b64encode(b"\x30" * 300).decode()):
        headers["GITHUB-PUBLIC-KEY-SIGNATURE"] = bad
        response = service.client.post(paths.LEAK_REPORTS, content=body, headers=headers)
        assert response.status_code in (400, 401), bad
        refused(service, token, response, response.status_code)


def test_an_oversized_report_is_refused_before_any_key_fetch(
    service: Service, key_server: KeyServer, github_key: GitHubKey
) -> None:
    token = service.token()
    body = report(token, *["x" * 1000] * 600)
    assert len(body) > 512 * 1024
    refused(service, token, post(service, body, github_key), 413)
    assert key_server.requests == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 2000 + b"]" * 2000, 400),
        (b"not json", 400),
        (b'{"token": "x"}', 422),
        (b'[{"type": "t"}]', 422),
        (b'[{"token": 1}]', 422),
        (b'["trustpub_x"]', 422),
    ],
    ids=["deep", "not-json", "object", "no-token", "number", "string"],
)
def test_malformed_signed_reports_are_refused(
    service: Service, github_key: GitHubKey, body: bytes, status: int
) -> None:
    token = service.token()
    refused(service, token, post(service, body, github_key), status)


def test_a_malformed_report_after_a_good_one_revokes_nothing(
    service: Service, github_key: GitHubKey
) -> None:
    token = service.token()
    body = json.dumps([{"token": token, "type": GITHUB_TYPE}, {"token": None}]).encode()
    refused(service, token, post(service, body, github_key), 422)


# -- keys: rotation, outages ------------------------------------------------------------


def test_an_unknown_identifier_triggers_one_refetch(
    service: Service, key_server: KeyServer, github_key: GitHubKey
) -> None:
    token = service.token()
    assert post(service, report(TRUSTPUB_TOKENS.generate()), github_key).status_code == 200
    assert key_server.requests == 1
    # GitHub rotates: a new key appears beside the old one.
    rotated = GitHubKey("b" * 64)
    key_server.keys.append(rotated)
    response = post(service, report(token), rotated)
    assert response.status_code == 200, response.text
    assert response.json()[0]["label"] == "true_positive"
    assert key_server.requests == 2
    # The old key still verifies, from the cache.
    assert post(service, report(TRUSTPUB_TOKENS.generate()), github_key).status_code == 200
    # An identifier nobody knows: no second refetch within the cooldown.
    other = service.token()
    stranger = GitHubKey("c" * 64)
    refused(service, other, post(service, report(other), stranger), 401)
    refused(service, other, post(service, report(other), stranger), 401)
    assert key_server.requests == 2


def test_key_server_down_is_503_and_revokes_nothing(
    service: Service, key_server: KeyServer, github_key: GitHubKey
) -> None:
    token = service.token()
    key_server.stop()
    refused(service, token, post(service, report(token), github_key), 503)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, None),
        (200, b"not json"),
        (200, b'{"public_keys": []}'),
        (200, b'{"public_keys": [{"key_identifier": "k", "key": "not a pem"}]}'),
        (200, b'{"public_keys": [{"key": "' + b"x" * 70000 + b'"}]}'),
    ],
    ids=["http-500", "not-json", "empty", "bad-pem", "oversized"],
)
def test_an_unusable_key_answer_is_503_and_revokes_nothing(
    service: Service, key_server: KeyServer, github_key: GitHubKey, status: int, body: bytes
) -> None:
    token = service.token()
    key_server.status, key_server.body = status, body
    refused(service, token, post(service, report(token), github_key), 503)
    # A failed fetch is not retried within the cooldown.
    refused(service, token, post(service, report(token), github_key), 503)
    assert key_server.requests == 1


def test_a_key_of_another_curve_is_not_used(service: Service, key_server: KeyServer) -> None:
    token = service.token()
    p384 = GitHubKey("d" * 64)
    p384.private = ec.generate_private_key(ec.SECP384R1())
    key_server.keys.append(p384)
    refused(service, token, post(service, report(token), p384), 503)


# -- the README ---------------------------------------------------------------------------


def leaked_tokens_section() -> str:
    text = (Path(__file__).parents[2] / "README.md").read_text()
    return text[text.index("## Leaked tokens") : text.index("## Container image")]


def test_the_documented_patterns_find_exactly_our_tokens() -> None:
    section = leaked_tokens_section()
    patterns = re.findall(r"\| `([^`]*)` \([^|]*\) \| `([^`]+)` \|", section)
    found = {name: re.compile(regex) for name, regex in patterns}
    assert set(found) == {"trustpub_token", "trustpub_registry_token"}
    for name, kind in (
        ("trustpub_token", TRUSTPUB_TOKENS),
        ("trustpub_registry_token", REGISTRY_TOKENS),
    ):
        for _ in range(20):
            token = kind.generate()
            match = found[name].search(f'token = "{token}"\n')
            assert match is not None
            assert match.group() == token
        assert found[name].search(kind.generate()[:-1] + " ") is None  # one short
        assert found[name].search(f"x{kind.generate()}") is None  # inside a longer word


def test_the_documented_limits_are_the_coded_ones() -> None:
    text = " ".join(leaked_tokens_section().split())
    parameters = inspect.signature(ScanningKeys).parameters
    assert f"capped at {parameters['max_bytes'].default // 1024} KiB" in text
    assert f"and {parameters['timeout'].default:g} s" in text
    assert f"a body over {secret_scanning.BODY_LIMIT // 1024} KiB a 413" in text
    assert f"nested more than {secret_scanning.MAX_DEPTH} levels" in text
    assert paths.LEAK_REPORTS in text
