from __future__ import annotations

import pytest

from trustpub.registry.errors import RegistryRefused
from trustpub.registry.names import canonical_name, check_crate_name, index_path


@pytest.mark.parametrize("name", ["a", "serde", "Serde_Json", "foo-bar", "x" * 64, "a1_-"])
def test_valid_names_are_accepted(name: str) -> None:
    check_crate_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("x" * 65, "too long"),
        ("1abc", "must start with an ASCII letter"),
        ("_abc", "must start with an ASCII letter"),
        ("-abc", "must start with an ASCII letter"),
        ("ünicode", "must start with an ASCII letter"),
        ("abç", "only ASCII letters"),
        ("foo.bar", "only ASCII letters"),
        ("foo bar", "only ASCII letters"),
        ("std", "reserved"),
        ("proc-macro", "reserved"),
        ("Core", "reserved"),
        ("nul", "reserved"),
        ("com1", "reserved"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(name: str, message: str) -> None:
    with pytest.raises(RegistryRefused) as info:
        check_crate_name(name)
    assert message in info.value.detail
    assert info.value.status_code == 400


def test_names_differing_in_case_or_dash_underscore_are_one_crate() -> None:
    assert canonical_name("Foo-Bar") == canonical_name("foo_bar") == "foo_bar"
    assert canonical_name("foobar") != canonical_name("foo_bar")


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("a", "1/a"),
        ("AB", "2/ab"),
        ("abc", "3/a/abc"),
        ("Serde", "se/rd/serde"),
        ("foo-bar", "fo/o-/foo-bar"),
    ],
)
def test_index_paths_follow_the_cargo_layout(name: str, path: str) -> None:
    assert index_path(name) == path
