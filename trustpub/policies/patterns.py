"""Ref patterns: anchored, with a wildcard that never crosses a `/` unless asked to.

A pattern is literal text plus two wildcards:

    *    any run of characters without `/`      refs/tags/v*     matches refs/tags/v1.2
    **   any run of characters, `/` included    refs/heads/**    matches refs/heads/a/b

Patterns are compiled here, not with ``fnmatch``: fnmatch lets ``*`` span `/` and
treats ``[`` and ``?`` as wildcards, so ``refs/tags/v*`` would also accept
``refs/tags/v1/../evil``-style names a policy author never meant. Every pattern is
matched against the whole ref (anchored at both ends).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Characters git forbids in ref names (git-check-ref-format), plus the glob syntax of
# other tools. A pattern using them could never match a real ref, or shows that its
# author expects a glob language we do not speak; refusing it at load time is kinder
# than a policy that silently never matches.
_FORBIDDEN = set("?[]\\~^: \t\r\n{}")

_HEX_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class PatternError(ValueError):
    """The pattern is not valid; the message says why."""


@dataclass(frozen=True, slots=True)
class RefPattern:
    """One compiled, anchored ref pattern. Build with ``RefPattern.compile``."""

    text: str
    _regex: re.Pattern[str] = field(repr=False, compare=False)

    @classmethod
    def compile(cls, text: str, *, allow_sha: bool = False) -> RefPattern:
        """Validate and compile ``text``; raise ``PatternError`` when it is not usable.

        Patterns must start with ``refs/`` (a bare ``v*`` would be a tag name, and the
        token carries the full ref). ``allow_sha`` also accepts a literal commit SHA,
        the form a reusable workflow pinned by commit shows in ``job_workflow_ref``.
        """
        if not text:
            raise PatternError("must not be empty")
        if text != text.strip():
            raise PatternError("must not start or end with whitespace")
        if allow_sha and _HEX_SHA.fullmatch(text):
            return cls(text, re.compile(re.escape(text)))
        if not text.startswith("refs/"):
            hint = " or a full commit SHA" if allow_sha else ""
            raise PatternError(
                f"must start with `refs/`{hint} (for example `refs/tags/v*` or `refs/heads/main`)"
            )
        bad = sorted({c for c in text if c in _FORBIDDEN or not c.isprintable()})
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            raise PatternError(f"contains characters not allowed in a ref pattern: {shown}")
        if "***" in text:
            raise PatternError("`***` is ambiguous; use `*` (within one segment) or `**`")
        if "//" in text or text.endswith("/"):
            raise PatternError("must not contain empty path segments")
        return cls(text, re.compile(_to_regex(text)))

    def matches(self, ref: str) -> bool:
        """True when the whole of ``ref`` matches the pattern."""
        return self._regex.fullmatch(ref) is not None

    def __str__(self) -> str:
        return self.text


def _to_regex(text: str) -> str:
    parts: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("**", i):
            parts.append(".*")
            i += 2
        elif text[i] == "*":
            # A single star stays inside one path segment: `refs/tags/v*` must not
            # accept `refs/tags/v1/anything`.
            parts.append("[^/]*")
            i += 1
        else:
            parts.append(re.escape(text[i]))
            i += 1
    # DOTALL so that `**` means "anything" even for a ref with a control character.
    return "(?s)" + "".join(parts)
