"""trustpub.text: ASCII-only folding and safe quoting."""

import json

import pytest

from trustpub.text import encodable, fold, same_folded, shown

# Pairs that str.lower() or str.casefold() would take for one name.
LOOKALIKES = [
    ("\u212aube", "kube"),  # KELVIN SIGN lowers to `k`
    ("\u0130nfra", "i\u0307nfra"),  # LATIN CAPITAL I WITH DOT lowers to `i` + combining dot
    ("stra\u00dfe", "strasse"),  # sharp s casefolds to `ss`
    ("\u1e9e", "\u00df"),  # capital sharp s lowers to sharp s
    ("\uff30\uff32\uff2f\uff24", "\uff50\uff52\uff4f\uff44"),  # full-width PROD / prod
]


@pytest.mark.parametrize(("a", "b"), LOOKALIKES)
def test_only_ascii_letters_fold(a: str, b: str) -> None:
    # The pair really is equal for Python's own folding: the test would catch a
    # regression to lower() or casefold().
    assert a.lower() == b.lower() or a.casefold() == b.casefold()
    assert not same_folded(a, b)
    assert fold(a) != fold(b)


def test_ascii_letters_fold_and_nothing_else_changes() -> None:
    assert fold("Octo-Org/OCTO_lib.1") == "octo-org/octo_lib.1"
    assert same_folded("KUBE-prod", "kube-PROD")
    assert fold("\u212a\u0130\u00df\uff30") == "\u212a\u0130\u00df\uff30"


def test_lone_surrogates_are_not_encodable() -> None:
    assert encodable("caf\u00e9 \U0001f600")
    assert not encodable("a\ud800b")
    assert not encodable("\udfff")


@pytest.mark.parametrize(
    "value", ["a\ud800b", "line\nbreak", "\x00nul", "bell\x07", "\u202eevil", "ok-value"]
)
def test_shown_values_always_encode(value: str) -> None:
    text = shown(value)
    text.encode("utf-8")
    json.dumps(text, ensure_ascii=False).encode("utf-8")
    assert text.isprintable()


def test_shown_escapes_like_repr_and_keeps_printable_text() -> None:
    assert shown("a\ud800b") == "a\\ud800b"
    assert shown("a\nb") == "a\\nb"
    assert shown("caf\u00e9") == "caf\u00e9"


def test_shown_is_bounded() -> None:
    assert shown("x" * 1000, limit=10) == "x" * 10 + "…"
