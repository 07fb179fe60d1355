from __future__ import annotations

import pytest

from tests.registry.conftest import RegistryEnv
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


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/crates/{long}",
        "/api/v1/crates/{long}/versions",
        "/api/v1/crates/{long}/reverse_dependencies",
        "/api/v1/crates/{long}/downloads",
        "/api/v1/crates/{long}/1.0.0/dependencies",
        "/api/v1/crates/demo/{long}",
    ],
)
def test_a_long_name_in_a_path_is_not_echoed_whole(env: RegistryEnv, path: str) -> None:
    """A refusal quotes what was asked for, cut short (trustpub.text.shown)."""
    if "demo/" in path:
        env.user("alice")
        assert env.publish(env.token("alice"), "demo", "1.0.0").status_code == 200
    response = env.client.get(path.format(long="x" * 5000))
    assert response.status_code == 404, response.text
    assert len(response.text) < 600
