"""Durations as registry owners write them: ``1800`` (an integer), ``"90s"``, ``"45m"``,
``"2h"``, ``"1h30m"``, ``"90d"``. One parser for policies, configuration and the CLI."""

from __future__ import annotations

import re

# A string always names its units, so "45" cannot be read as minutes by one reader and
# seconds by another.
_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_UNITS = (86400, 3600, 60, 1)


def parse_duration(value: object) -> int:
    """Seconds, from an integer or a duration string. Raises ``ValueError`` saying what
    was expected."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f'expected seconds (an integer) or a duration like "45m", got {type(value).__name__}'
        )
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.fullmatch(value)
        if not value or match is None:
            raise ValueError(
                f'expected a duration like "90s", "45m", "2h", "1h30m" or "90d", got "{value[:40]}"'
            )
        seconds = sum(int(g) * unit for g, unit in zip(match.groups(), _UNITS, strict=True) if g)
    if seconds <= 0:
        raise ValueError("must be longer than zero seconds")
    return seconds
