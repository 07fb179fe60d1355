"""Parsing and validating what ``cargo publish`` sends, without any storage."""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
from typing import Any

import pytest

from tests.registry.helpers import dep, make_crate, manifest, metadata, publish_body
from trustpub.registry.errors import RegistryRefused
from trustpub.registry.publish import Limits, parse_publish, split_body

LIMITS = Limits()


def refused(body: bytes, limits: Limits = LIMITS) -> RegistryRefused:
    with pytest.raises(RegistryRefused) as info:
        parse_publish(body, limits)
    return info.value


def test_a_well_formed_body_parses_with_the_crate_checksum() -> None:
    crate = make_crate("demo", "1.0.0")
    parsed = parse_publish(publish_body(metadata("demo", "1.0.0"), crate), LIMITS)
    assert parsed.metadata.name == "demo"
    assert parsed.crate == crate
    import hashlib

    assert parsed.cksum == hashlib.sha256(crate).hexdigest()


# -- length prefixes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "ends before the metadata length"),
        (b"\x01\x00", "ends before the metadata length"),
        (struct.pack("<I", 100) + b"{}", "metadata length (100) exceeds the body"),
        (struct.pack("<I", 2) + b"{}", "ends before the .crate length"),
        (struct.pack("<I", 2) + b"{}" + struct.pack("<I", 50) + b"x", "exceeds the body"),
        (struct.pack("<I", 2) + b"{}" + struct.pack("<I", 1) + b"xy", "unexpected bytes"),
    ],
)
def test_malformed_length_prefixes_are_refused(body: bytes, message: str) -> None:
    error = refused(body)
    assert message in error.detail
    assert error.status_code == 400


def test_oversized_metadata_and_crate_are_refused_with_413() -> None:
    small = Limits(metadata=10, crate=10)
    error = refused(publish_body(metadata("demo", "1.0.0"), b"x"), small)
    assert error.status_code == 413
    assert "metadata is too large" in error.detail
    error = refused(publish_body(b"{}", b"x" * 11), small)
    assert error.status_code == 413
    assert ".crate file is too large" in error.detail


# -- metadata JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_metadata_json_is_refused(meta: bytes, message: str) -> None:
    assert message in refused(publish_body(meta, make_crate("demo", "1.0.0"))).detail


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": 5}, "`name` must be a string"),
        ({"name": "9lives"}, "must start with an ASCII letter"),
        ({"name": "std"}, "reserved"),
        ({"vers": "1.0"}, "Invalid version `1.0`"),
        ({"deps": {}}, "`deps` must be a list"),
        ({"deps": [5]}, "`deps[0]` must be an object"),
        ({"deps": [dep("x", kind="weird")]}, "`deps[0].kind` must be one of"),
        ({"deps": [dep("x", optional="yes")]}, "`deps[0].optional` must be true or false"),
        ({"deps": [dep("x y")]}, "Invalid dependency name"),
        ({"deps": [dep("x", req="")]}, "Invalid version requirement"),
        ({"deps": [dep("x", explicit_name_in_toml="a/b")]}, "Invalid dependency rename"),
        ({"features": []}, "`features` must be an object"),
        ({"features": {"a b": []}}, "Invalid feature name"),
        ({"features": {"f": "x"}}, "must be a list of strings"),
        ({"keywords": ["a", "b", "c", "d", "e", "f"]}, "Too many keywords"),
        ({"keywords": "a"}, "`keywords` must be a list of strings"),
        ({"rust_version": "latest"}, "Invalid `rust_version`"),
        ({"description": 5}, "`description` must be a string or null"),
    ],
)
def test_invalid_metadata_fields_are_refused(changes: dict[str, Any], message: str) -> None:
    meta = metadata("demo", "1.0.0")
    meta.update(changes)
    error = refused(publish_body(meta, make_crate("demo", "1.0.0")))
    assert message in error.detail
    assert error.status_code == 400


def test_index_entry_maps_renames_features2_and_rust_version() -> None:
    meta = metadata(
        "demo",
        "1.0.0",
        deps=[
            dep("serde", "^1.0", explicit_name_in_toml="serde1", optional=True),
            dep("log", "^0.4", kind="dev", target="cfg(unix)", features=["std"]),
        ],
        features={"default": ["std"], "std": [], "json": ["dep:serde1"], "x": ["serde1?/std"]},
        rust_version="1.70",
        links="demo-sys",
    )
    parsed = parse_publish(publish_body(meta, make_crate("demo", "1.0.0")), LIMITS)
    entry = parsed.metadata.index_entry(parsed.cksum)
    assert entry["deps"][0] == {
        "name": "serde1",
        "package": "serde",
        "req": "^1.0",
        "features": [],
        "optional": True,
        "default_features": True,
        "target": None,
        "kind": "normal",
        "registry": None,
    }
    assert "package" not in entry["deps"][1]
    assert entry["deps"][1]["kind"] == "dev"
    assert entry["deps"][1]["target"] == "cfg(unix)"
    assert entry["features"] == {"default": ["std"], "std": []}
    assert entry["features2"] == {"json": ["dep:serde1"], "x": ["serde1?/std"]}
    assert entry["v"] == 2
    assert entry["rust_version"] == "1.70"
    assert entry["links"] == "demo-sys"
    assert entry["cksum"] == parsed.cksum
    assert entry["yanked"] is False


def test_index_entry_without_new_feature_syntax_is_v1() -> None:
    parsed = parse_publish(
        publish_body(metadata("demo", "1.0.0"), make_crate("demo", "1.0.0")), LIMITS
    )
    entry = parsed.metadata.index_entry(parsed.cksum)
    assert entry["v"] == 1
    assert "features2" not in entry
    assert "rust_version" not in entry


# -- the .crate archive ----------------------------------------------------------------


def body_with(crate: bytes, name: str = "demo", vers: str = "1.0.0") -> bytes:
    return publish_body(metadata(name, vers), crate)


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buffer.getvalue())


def file_info(path: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    return info, data


def test_a_crate_that_is_not_gzip_is_refused() -> None:
    assert "not a gzip archive" in refused(body_with(b"PK\x03\x04 zip file")).detail


def test_a_truncated_gzip_stream_is_refused() -> None:
    crate = make_crate("demo", "1.0.0")
    assert "truncated" in refused(body_with(crate[: len(crate) // 2])).detail


def test_data_after_the_gzip_stream_is_refused() -> None:
    crate = make_crate("demo", "1.0.0") + gzip.compress(b"more")
    assert "after the gzip stream" in refused(body_with(crate)).detail


def test_gzip_that_is_not_a_tarball_is_refused() -> None:
    assert "not a valid tar archive" in refused(body_with(gzip.compress(b"x" * 1000))).detail


def test_entries_outside_name_version_are_refused() -> None:
    crate = make_crate("demo", "1.0.0", prefix="other-1.0.0")
    assert "outside `demo-1.0.0/`" in refused(body_with(crate)).detail
    escaping = tar_gz(
        [
            file_info("demo-1.0.0/Cargo.toml", manifest("demo", "1.0.0")),
            file_info("demo-1.0.0/../evil", b"x"),
        ]
    )
    assert "outside `demo-1.0.0/`" in refused(body_with(escaping)).detail
    absolute = tar_gz([file_info("/etc/passwd", b"x")])
    assert "outside" in refused(body_with(absolute)).detail


def test_links_and_devices_in_the_archive_are_refused() -> None:
    link = tarfile.TarInfo("demo-1.0.0/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    crate = make_crate("demo", "1.0.0", extra=[link])
    assert "not a regular file or directory" in refused(body_with(crate)).detail


def test_a_crate_without_cargo_toml_is_refused() -> None:
    crate = make_crate("demo", "1.0.0", with_manifest=False)
    assert "missing `demo-1.0.0/Cargo.toml`" in refused(body_with(crate)).detail


@pytest.mark.parametrize(
    ("manifest_text", "message"),
    [
        (b"not = [toml", "not valid TOML"),
        (b"[workspace]\nmembers = []\n", "no [package] table"),
        (b'[package]\nname = "other"\nversion = "1.0.0"\n', "names package `other`"),
        (b'[package]\nname = "demo"\nversion = "2.0.0"\n', "has version `2.0.0`"),
    ],
)
def test_a_cargo_toml_that_does_not_match_the_metadata_is_refused(
    manifest_text: bytes, message: str
) -> None:
    crate = make_crate("demo", "1.0.0", files={"Cargo.toml": manifest_text})
    assert message in refused(body_with(crate)).detail


def test_a_crate_unpacking_beyond_the_limit_is_refused() -> None:
    crate = make_crate("demo", "1.0.0", files={"big.bin": b"\0" * 200_000})
    error = refused(body_with(crate), Limits(unpacked=100_000))
    assert error.status_code == 413
    assert "unpacks to more than 100000 bytes" in error.detail


def test_too_many_entries_are_refused() -> None:
    files = {f"f{i}.rs": b"" for i in range(20)}
    crate = make_crate("demo", "1.0.0", files=files)
    assert "more than 10 entries" in refused(body_with(crate), Limits(entries=10)).detail


def test_metadata_is_checked_before_the_archive() -> None:
    # A bad name is reported as such, not as an archive problem.
    body = publish_body(metadata("9x", "1.0.0"), b"garbage")
    assert "must start with an ASCII letter" in refused(body).detail


def test_metadata_json_is_exactly_what_was_sent() -> None:
    # The declared length delimits the JSON (trailing whitespace included): what is
    # parsed is the sent metadata, and the crate is the bytes after it, nothing else.
    sent = metadata(
        "demo", "1.0.0", description="sent \u00e9 text", license="Apache-2.0", keywords=["k"]
    )
    raw = json.dumps(sent).encode() + b" "
    crate = make_crate("demo", "1.0.0")
    body = publish_body(raw, crate)
    assert split_body(body, LIMITS) == (raw, crate)
    parsed = parse_publish(body, LIMITS)
    assert parsed.crate == crate
    assert parsed.metadata.name == "demo"
    assert parsed.metadata.vers == "1.0.0"
    assert parsed.metadata.description == "sent \u00e9 text"
    assert parsed.metadata.license == "Apache-2.0"
    assert parsed.metadata.keywords == ("k",)
    assert parsed.metadata.deps == ()
    assert parsed.metadata.links is None
