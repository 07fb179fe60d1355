"""Hostile uploads: text that is not Unicode, deep nesting, gzip bombs from callers with
no right to publish, squatted crate names, and the modes of the files written."""

from __future__ import annotations

import io
import json
import logging
import stat
import tarfile
import zlib
from typing import Any

import pytest

from tests.registry.conftest import RegistryEnv, detail, file_storage_only, with_s3
from tests.registry.helpers import dep, make_crate, manifest, metadata, publish_body
from trustpub.grants import Operation
from trustpub.registry.errors import RegistryRefused, forbidden
from trustpub.registry.publish import MAX_NESTING, Limits, nesting_depth, parse_publish

# Publishes and downloads reach the crate file store: every backend, S3 included.
pytestmark = with_s3

NEW = Operation.PUBLISH_NEW
UPDATE = Operation.PUBLISH_UPDATE
SMALL = Limits(unpacked=1024 * 1024)


@pytest.fixture
def limits() -> Limits:
    return SMALL


def refused(body: bytes, limits: Limits = SMALL) -> RegistryRefused:
    with pytest.raises(RegistryRefused) as info:
        parse_publish(body, limits)
    error = info.value
    error.detail.encode("utf-8")
    json.dumps(error.detail, ensure_ascii=False).encode("utf-8")
    return error


# -- text that is not Unicode ------------------------------------------------------------

SURROGATE = "x\ud800"


@pytest.mark.parametrize(
    "fields",
    [
        {"name": SURROGATE},
        {"vers": f"1.0.0-{SURROGATE}"},
        {"deps": [dep(SURROGATE)]},
        {"deps": [dep("serde", explicit_name_in_toml=SURROGATE)]},
        {"features": {SURROGATE: []}},
        {"features": {"std": [SURROGATE]}},
        {"keywords": [SURROGATE]},
        {"description": SURROGATE},
    ],
    ids=["name", "vers", "dep", "rename", "feature", "feature-value", "keyword", "description"],
)
def test_a_lone_surrogate_anywhere_in_the_metadata_is_a_400(fields: dict[str, Any]) -> None:
    meta = metadata("demo", "1.0.0")
    meta.update(fields)
    error = refused(publish_body(meta, make_crate("demo", "1.0.0")))
    assert error.status_code == 400
    assert "\\ud800" in error.detail


def test_a_tar_entry_name_that_is_not_utf8_is_quoted_safely() -> None:
    buffer = io.BytesIO()
    # Written as Latin-1, the name's byte 0xff is not UTF-8: read back, tarfile turns it
    # into a lone surrogate, which the refusal must not quote raw.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as t:
        for name, data in [
            ("demo-1.0.0/Cargo.toml", manifest("demo", "1.0.0")),
            ("evil-\xff", b""),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    crate = zlib.compress(buffer.getvalue(), wbits=31)
    error = refused(publish_body(metadata("demo", "1.0.0"), crate))
    assert error.status_code == 400
    assert "evil-\\udcff" in error.detail


def test_the_registry_answers_a_surrogate_with_a_400(env: RegistryEnv) -> None:
    env.user("alice")
    meta = metadata("demo", "1.0.0", deps=[dep("a\udfffb")])
    response = env.put_body(env.token("alice"), publish_body(meta, make_crate("demo", "1.0.0")))
    assert response.status_code == 400
    assert "\\udfff" in detail(response)


# -- nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('a = [[1], {b = "]]]"}]', 2),
        ("a = '[[[[' # [[[[\n", 0),
        ('a = """\n[[[[\n"""\nb = [1]', 1),
        ("a = '''[[[['''", 0),
        ('{"a": [{"b": "\\"[[[", "c": []}]}', 4),
        ("[" * 5000, 5000),
    ],
)
def test_nesting_depth_skips_strings_and_comments(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_deeply_nested_metadata_json_is_a_400() -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    raw = b'{"name": "demo", "vers": "1.0.0", "x": ' + nested + b"}"
    error = refused(publish_body(raw, make_crate("demo", "1.0.0")), Limits(metadata=1 << 20))
    assert error.status_code == 400
    assert "nested" in error.detail


def test_metadata_at_the_nesting_limit_parses() -> None:
    nested = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    raw = json.dumps(metadata("demo", "1.0.0"))[:-1] + f', "x": {nested}}}'
    parsed = parse_publish(publish_body(raw.encode(), make_crate("demo", "1.0.0")), SMALL)
    assert parsed.metadata.name == "demo"


@pytest.mark.parametrize("opening", ["[", "{x = "])
def test_deeply_nested_cargo_toml_is_a_400(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    deep = manifest("demo", "1.0.0") + f"x = {opening * 5000}1{closing * 5000}\n".encode()
    crate = make_crate("demo", "1.0.0", files={"Cargo.toml": deep})
    error = refused(publish_body(metadata("demo", "1.0.0"), crate))
    assert error.status_code == 400
    assert "nested" in error.detail


# -- the order of checks -----------------------------------------------------------------


def gzip_bomb(name: str, vers: str, size: int) -> bytes:
    """A .crate whose tar holds a file of ``size`` zero bytes: tiny packed, huge unpacked."""
    header = tarfile.TarInfo(f"{name}-{vers}/big.bin")
    header.size = size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    parts = [compressor.compress(header.tobuf(format=tarfile.GNU_FORMAT))]
    for _ in range(size // len(chunk)):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    return b"".join(parts)


def test_authorization_runs_before_the_crate_is_decompressed() -> None:
    seen: list[str] = []

    def deny(meta: Any) -> None:
        seen.append(meta.name)
        raise forbidden("no right to publish")

    # Not even gzip: had the archive been looked at first, the refusal would say so.
    with pytest.raises(RegistryRefused) as info:
        parse_publish(publish_body(metadata("demo", "1.0.0"), b"not gzip"), SMALL, deny)
    assert info.value.detail == "no right to publish"
    assert seen == ["demo"]


def test_a_gzip_bomb_from_a_caller_without_publish_rights_is_refused_unopened(
    env: RegistryEnv,
) -> None:
    env.user("alice")
    bomb = gzip_bomb("demo", "1.0.0", 4 * SMALL.unpacked)
    body = publish_body(metadata("demo", "1.0.0"), bomb)
    cases = [
        env.token("alice", scopes=("yank",)),
        env.token("alice", crates=("other",)),
        env.authority.grant({"other": {NEW, UPDATE}}, owners={"other": ("alice",)}),
        env.authority.grant({"demo": {UPDATE}}),  # a new crate needs publish-new
    ]
    for token in cases:
        response = env.put_body(token, body)
        assert response.status_code == 403, response.text
    # The bomb is real: a caller with the right gets it refused when unpacked.
    assert env.put_body(env.token("alice"), body).status_code == 413
    assert env.crate_files() == []
    assert env.staged_files() == []


def test_a_non_owner_is_refused_before_the_archive_is_opened(env: RegistryEnv) -> None:
    env.user("alice")
    env.user("bob")
    assert env.publish(env.token("alice"), "demo", "1.0.0").status_code == 200
    bomb = gzip_bomb("demo", "1.1.0", 4 * SMALL.unpacked)
    response = env.put_body(env.token("bob"), publish_body(metadata("demo", "1.1.0"), bomb))
    assert response.status_code == 403
    assert detail(response) == "You are not an owner of crate `demo`"


# -- squatting ---------------------------------------------------------------------------


def owners_of(env: RegistryEnv, name: str) -> list[str]:
    users = env.client.get(f"/api/v1/crates/{name}/owners").json()["users"]
    return [u["login"] for u in users]


@pytest.mark.parametrize(("registered", "policy_name"), [("mylib", "mylib"), ("my_lib", "my-lib")])
def test_a_ci_token_cannot_publish_into_a_crate_squatted_by_someone_else(
    env: RegistryEnv, caplog: pytest.LogCaptureFixture, registered: str, policy_name: str
) -> None:
    env.user("alice")
    env.user("bob")
    assert env.publish(env.token("bob"), registered, "0.0.1").status_code == 200
    token = env.authority.grant({policy_name: {NEW, UPDATE}}, owners={policy_name: ("alice",)})
    with caplog.at_level(logging.INFO, logger="trustpub.audit"):
        response = env.publish(token, registered, "1.0.0")
    assert response.status_code == 409
    text = detail(response)
    assert f"crate `{registered}` already exists" in text
    assert "`bob`" in text
    assert "`alice`" in text
    assert owners_of(env, registered) == ["bob"]
    assert [line["vers"] for line in env.index_lines(registered)] == ["0.0.1"]
    fields = [getattr(r, "fields") for r in caplog.records if r.name == "trustpub.audit"]  # noqa: B009
    refusal = next(f for f in fields if f.get("reason") == "crate-owned-by-others")
    assert refusal["crate"] == registered
    assert refusal["owners"] == ["bob"]
    assert refusal["policy_owners"] == ["alice"]


def test_a_ci_token_publishes_into_a_crate_one_of_its_policy_owners_owns(
    env: RegistryEnv,
) -> None:
    env.user("alice")
    env.user("bob")
    assert env.publish(env.token("bob"), "mylib", "0.0.1").status_code == 200
    # Logins compare with ASCII case folded, as the registry's logins do.
    token = env.authority.grant({"mylib": {NEW, UPDATE}}, owners={"mylib": ("alice", "BOB")})
    assert env.publish(token, "mylib", "1.0.0").status_code == 200


def test_a_ci_token_without_owners_updates_an_existing_crate(env: RegistryEnv) -> None:
    # A policy that only updates names no owners: it publishes for the crate's owners,
    # whoever they are (the crates.io model).
    env.user("bob")
    assert env.publish(env.token("bob"), "mylib", "0.0.1").status_code == 200
    token = env.authority.grant({"mylib": {UPDATE}})
    assert env.publish(token, "mylib", "1.0.0").status_code == 200


# -- file modes --------------------------------------------------------------------------


@file_storage_only
def test_crate_files_and_directories_are_owner_only(env: RegistryEnv) -> None:
    env.user("alice")
    assert env.publish(env.token("alice"), "demo", "1.0.0").status_code == 200
    (path,) = (env.directory / "crates").rglob("*.crate")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (path.parent, env.directory / "crates", env.directory / "tmp"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


# -- failed authentication ---------------------------------------------------------------


def test_failed_token_checks_block_the_address(env: RegistryEnv) -> None:
    from trustpub.ratelimit import Limit, MemoryBackend, RateLimiter, RateLimits

    env.registry.rate_limiter = RateLimiter(
        RateLimits(None, None, Limit("failed-auth-client", 2, 3600)), MemoryBackend()
    )
    env.user("alice")
    good = env.token("alice")
    assert env.publish(good, "demo", "1.0.0").status_code == 200
    assert env.publish("tpreg_" + "x" * 40, "demo", "1.0.1").status_code == 403
    assert env.publish("trustpub_nope", "demo", "1.0.1").status_code == 403
    response = env.publish(good, "demo", "1.0.1")
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
