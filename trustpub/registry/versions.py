"""SemVer 2.0.0 versions, as cargo writes them, and their precedence."""

from __future__ import annotations

import re
from dataclasses import dataclass

from trustpub.registry.errors import bad_request
from trustpub.text import shown

_NUMBER = r"0|[1-9][0-9]*"
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    rf"(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?"
)
MAX_VERSION_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...]
    build: str | None

    @property
    def without_build(self) -> str:
        """The version without build metadata: cargo treats ``1.0.0+a`` and ``1.0.0+b``
        as the same version, so a registry must too."""
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.pre)}" if self.pre else core

    @property
    def is_prerelease(self) -> bool:
        return bool(self.pre)

    def sort_key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        """Precedence (SemVer 11): a pre-release sorts below its release; numeric
        identifiers compare numerically and below alphanumeric ones."""
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)


def parse_version(text: str) -> Version:
    """Parse a SemVer version, refusing anything cargo would not accept."""
    if len(text) > MAX_VERSION_LENGTH:
        raise bad_request(f"The version is too long (max {MAX_VERSION_LENGTH} characters)")
    match = _SEMVER.fullmatch(text)
    if match is None:
        raise bad_request(
            f"Invalid version `{shown(text)}`: expected a SemVer version like `1.2.3`"
        )
    pre = match.group("pre")
    pre_parts = tuple(pre.split(".")) if pre else ()
    for part in pre_parts:
        # SemVer forbids leading zeros in numeric pre-release identifiers.
        if part.isdigit() and len(part) > 1 and part.startswith("0"):
            raise bad_request(
                f"Invalid version `{shown(text)}`: numeric pre-release identifiers must not "
                "have leading zeros"
            )
    try:
        major, minor, patch = (int(match.group(k)) for k in ("major", "minor", "patch"))
    except ValueError:  # pragma: no cover - the pattern only admits digits
        raise bad_request(f"Invalid version `{shown(text)}`") from None
    # Cargo parses the numbers as u64.
    if max(major, minor, patch) >= 2**64:
        raise bad_request(f"Invalid version `{shown(text)}`: a number is too large")
    return Version(major, minor, patch, pre_parts, match.group("build"))
