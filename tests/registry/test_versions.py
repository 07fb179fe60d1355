from __future__ import annotations

import pytest

from trustpub.registry.errors import RegistryRefused
from trustpub.registry.versions import parse_version


@pytest.mark.parametrize(
    "text", ["0.0.0", "1.2.3", "1.0.0-alpha.1", "1.0.0+build.5", "1.0.0-rc.1+sha.abc", "10.20.30"]
)
def test_semver_versions_parse(text: str) -> None:
    parse_version(text)


@pytest.mark.parametrize(
    "text",
    ["1", "1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3+", "1.2.3-01", "1.2.3 ", "1.2.3-a..b", ""],
)
def test_non_semver_versions_are_refused(text: str) -> None:
    with pytest.raises(RegistryRefused):
        parse_version(text)


def test_huge_numbers_and_long_versions_are_refused() -> None:
    with pytest.raises(RegistryRefused, match="too large"):
        parse_version(f"{2**64}.0.0")
    with pytest.raises(RegistryRefused, match="too long"):
        parse_version("1.0.0-" + "a" * 200)


def test_build_metadata_does_not_distinguish_versions() -> None:
    assert parse_version("1.0.0+a").without_build == parse_version("1.0.0+b").without_build
    assert parse_version("1.0.0-rc.1+x").without_build == "1.0.0-rc.1"


def test_precedence_follows_semver() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    keys = [parse_version(v).sort_key() for v in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
