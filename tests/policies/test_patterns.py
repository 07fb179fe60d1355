import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustpub.policies import PatternError, RefPattern


@pytest.mark.parametrize(
    ("pattern", "ref"),
    [
        ("refs/tags/v*", "refs/tags/v1.2.3"),
        ("refs/tags/v*", "refs/tags/v"),
        ("refs/heads/main", "refs/heads/main"),
        ("refs/heads/release/*", "refs/heads/release/1.x"),
        ("refs/heads/**", "refs/heads/feature/deep/branch"),
        ("refs/tags/*-rc*", "refs/tags/v1-rc2"),
        ("refs/tags/v1.+", "refs/tags/v1.+"),
    ],
)
def test_pattern_matches(pattern: str, ref: str) -> None:
    assert RefPattern.compile(pattern).matches(ref)


@pytest.mark.parametrize(
    ("pattern", "ref"),
    [
        ("refs/tags/v*", "refs/tags/v1/evil"),
        ("refs/tags/v*", "refs/heads/v1"),
        ("refs/tags/v*", "xrefs/tags/v1"),
        ("refs/heads/main", "refs/heads/main2"),
        ("refs/heads/main", "refs/heads/mai"),
        ("refs/heads/main", "REFS/HEADS/MAIN"),
        ("refs/tags/v1.0", "refs/tags/v1x0"),
        ("refs/heads/*", "refs/heads/a/b"),
    ],
)
def test_pattern_does_not_match(pattern: str, ref: str) -> None:
    assert not RefPattern.compile(pattern).matches(ref)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "must not be empty"),
        (" refs/tags/v*", "whitespace"),
        ("v*", "must start with `refs/`"),
        ("refs/tags/v?", "not allowed"),
        ("refs/tags/[v]*", "not allowed"),
        ("refs/tags/***", "ambiguous"),
        ("refs//tags", "empty path segments"),
        ("refs/tags/", "empty path segments"),
        ("refs/tags/a b", "not allowed"),
        ("refs/tags/\x00", "not allowed"),
    ],
)
def test_invalid_patterns_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        RefPattern.compile(pattern)


def test_full_commit_sha_accepted_only_when_allowed() -> None:
    sha = "8c13a5f0d1c8a9e6b1f28c13a5f0d1c8a9e6b1f2"
    assert RefPattern.compile(sha, allow_sha=True).matches(sha)
    with pytest.raises(PatternError):
        RefPattern.compile(sha)
    with pytest.raises(PatternError, match="commit SHA"):
        RefPattern.compile("abc123", allow_sha=True)


_segment = st.text(alphabet="abcxyz019.-_", min_size=0, max_size=8)


@given(prefix=_segment, left=_segment, right=_segment)
def test_single_star_never_matches_across_a_slash(prefix: str, left: str, right: str) -> None:
    pattern = RefPattern.compile(f"refs/tags/{prefix}*")
    assert not pattern.matches(f"refs/tags/{prefix}{left}/{right}")


@given(rest=st.text(min_size=0, max_size=30).filter(lambda s: "/" not in s))
def test_single_star_matches_any_segment_without_slash(rest: str) -> None:
    assert RefPattern.compile("refs/tags/*").matches(f"refs/tags/{rest}")


@given(rest=st.text(min_size=0, max_size=30))
def test_double_star_matches_anything_below(rest: str) -> None:
    assert RefPattern.compile("refs/heads/**").matches(f"refs/heads/{rest}")


@given(segments=st.lists(st.text(alphabet="abv01.-_+", min_size=1, max_size=6), min_size=1))
def test_literal_pattern_matches_only_itself(segments: list[str]) -> None:
    literal = "refs/tags/" + "/".join(segments)
    pattern = RefPattern.compile(literal)
    assert pattern.matches(literal)
    assert not pattern.matches(literal + "x")
    assert not pattern.matches(literal[:-1])


@pytest.mark.parametrize(
    ("pattern", "ref", "expected"),
    [
        # The text after a wildcard is matched character by character, none skipped.
        ("refs/heads/**/stable", "refs/heads/a/b/stable", True),
        ("refs/heads/**/stable", "refs/heads//stable", True),
        ("refs/heads/**/stable", "refs/heads/xstable", False),
        ("refs/heads/**/stable", "refs/heads/a/stablex", False),
        ("refs/tags/v*-rc", "refs/tags/v1-rc", True),
        ("refs/tags/v*-rc", "refs/tags/v1xrc", False),
        ("refs/tags/v*-rc", "refs/tags/v1/-rc", False),
        ("refs/tags/*.*", "refs/tags/1.2", True),
        ("refs/tags/*.*", "refs/tags/12", False),
        # A single star before a later `**` still stops at a slash.
        ("refs/*/x/**", "refs/a/x/b/c", True),
        ("refs/*/x/**", "refs/a/b/x/c", False),
        ("refs/heads/**x", "refs/heads/a/bx", True),
        ("refs/heads/**x", "refs/heads/a/b", False),
        # `**` spans any number of segments anywhere in the pattern.
        ("refs/**/v1", "refs/tags/deep/v1", True),
        ("refs/**/v1", "refs/tags/deep/v2", False),
        ("refs/heads/**", "refs/heads/", True),
        ("refs/heads/**", "refs/head/x", False),
    ],
)
def test_wildcards_consume_exactly_their_own_characters(
    pattern: str, ref: str, expected: bool
) -> None:
    assert RefPattern.compile(pattern).matches(ref) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "must not be empty"),
        ("refs/tags/v* ", "must not start or end with whitespace"),
        (
            "heads/refs/",
            "must start with `refs/` (for example `refs/tags/v*` or `refs/heads/main`)",
        ),
        (
            "xrefs/tags/v*",
            "must start with `refs/` (for example `refs/tags/v*` or `refs/heads/main`)",
        ),
        ("refs/tags/***", "`***` is ambiguous; use `*` (within one segment) or `**`"),
        ("refs/tags/v?", "contains characters not allowed in a ref pattern: '?'"),
        (
            "refs/tags/a[b]\x7f",
            "contains characters not allowed in a ref pattern: '[', ']', '\\x7f'",
        ),
        ("refs/a//b", "must not contain empty path segments"),
        ("refs/tags/", "must not contain empty path segments"),
    ],
)
def test_invalid_pattern_messages(pattern: str, message: str) -> None:
    with pytest.raises(PatternError) as info:
        RefPattern.compile(pattern)
    assert str(info.value) == message


def test_commit_sha_hint_only_when_shas_are_allowed() -> None:
    with pytest.raises(PatternError) as info:
        RefPattern.compile("main", allow_sha=True)
    assert str(info.value) == (
        "must start with `refs/` or a full commit SHA "
        "(for example `refs/tags/v*` or `refs/heads/main`)"
    )
    sha256 = "0123456789abcdef" * 4
    assert RefPattern.compile(sha256, allow_sha=True).matches(sha256)
    assert not RefPattern.compile(sha256, allow_sha=True).matches(sha256[:-1] + "0")
    for almost in ("0123456789ABCDEF" * 3 + "01234567", "0" * 39, "0" * 41, "0" * 63):
        with pytest.raises(PatternError):
            RefPattern.compile(almost, allow_sha=True)


def test_pattern_text_is_kept() -> None:
    pattern = RefPattern.compile("refs/tags/v*")
    assert str(pattern) == pattern.text == "refs/tags/v*"
    assert RefPattern.compile("refs/tags/v*") == pattern
    assert pattern != RefPattern.compile("refs/tags/w*")
