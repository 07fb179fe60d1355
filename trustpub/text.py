"""Text that crosses the trust boundary: comparing names, and quoting them back.

Case-insensitive comparison folds the ASCII letters ``A``-``Z`` and nothing else.
``str.lower()`` and ``str.casefold()`` fold far more: the Kelvin sign ``K`` (U+212A)
lowers to ``k``, ``İ`` (U+0130) to ``i`` plus a combining dot, ``ß`` casefolds to ``ss``
and full-width letters stay apart from ASCII only until someone normalises them. A
claim or a name spelt with such a character could then be taken for another one and
reach its policy or its crate. Every case-insensitive comparison of claims, policy
fields, crate names and logins goes through ``fold``; where the provider or the
registry cannot produce non-ASCII text at all, the caller refuses it before comparing.

``shown`` is how a value we refuse is quoted in a message: a response or a log line
must always encode, and a lone surrogate (``"\\ud800"``, which JSON allows) cannot be
written as UTF-8.
"""

from __future__ import annotations

import string

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

MAX_SHOWN = 200
"""Characters of a refused value quoted back, at most."""


def fold(value: str) -> str:
    """``value`` with ``A``-``Z`` lower-cased and every other character unchanged."""
    return value.translate(_ASCII_LOWER)


def same_folded(a: str, b: str) -> bool:
    """Equal up to the case of ASCII letters (non-ASCII characters must match exactly)."""
    return fold(a) == fold(b)


def encodable(value: str) -> bool:
    """True when ``value`` can be written as UTF-8 (it holds no lone surrogate)."""
    # ASCII is known without looking at the characters (CPython keeps it as a flag of
    # the string): the claims of a real token are, and every one of them goes through here.
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value: str, limit: int = MAX_SHOWN) -> str:
    """``value`` made safe to quote: printable text as it is, any other character
    escaped as ``repr`` escapes it (``\\ud800``, ``\\n``), cut to ``limit`` characters."""
    clipped = value[:limit]
    if clipped.isprintable() and encodable(clipped):
        text = clipped
    else:
        text = "".join(
            ch if ch.isprintable() and encodable(ch) else repr(ch)[1:-1] for ch in clipped
        )
    return text + ("…" if len(value) > limit else "")
