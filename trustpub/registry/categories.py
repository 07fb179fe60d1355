"""The categories a registry offers, and the keyword rules: what ``cargo publish`` may
put in a manifest's ``categories`` and ``keywords``.

The list is data, not code: ``categories.toml`` beside this module (crates.io's slugs
and names, our own descriptions) unless ``[registry] categories`` names another file
in the same format (described at the top of that file). Read once at start-up; a file
that cannot be used stops the start with a ``ConfigurationError`` naming the file and
the entry.

As on crates.io: a publish keeps the categories of the list and drops the others,
which the publish answer names in ``warnings.invalid_categories`` (cargo prints them);
a category matches by its exact slug. Keywords are refused, not dropped: at most five,
each 1 to 20 ASCII characters, letters, digits, ``_``, ``-`` and ``+``, starting with
a letter or digit; the registry keeps them lower-cased.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from trustpub.errors import ConfigurationError
from trustpub.registry.errors import bad_request
from trustpub.text import shown

MAX_CATEGORIES = 5
MAX_KEYWORDS = 5
MAX_KEYWORD_LENGTH = 20
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*")
_SLUG_PART = r"[a-z0-9][a-z0-9-]*"
_SLUG = re.compile(rf"{_SLUG_PART}(::{_SLUG_PART})*")
MAX_SLUG_LENGTH = 100
MAX_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 1000
MAX_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class Category:
    """A category: ``slug`` (``parent::child`` for a subcategory), ``name`` as the API
    shows it (``Parent::Child``), and a description."""

    slug: str
    name: str
    description: str

    @property
    def parent(self) -> str | None:
        head, sep, _ = self.slug.rpartition("::")
        return head if sep else None


class Categories:
    """An ordered, validated category list (see ``load_categories``)."""

    def __init__(self, items: Iterable[Category]) -> None:
        self._by_slug = {c.slug: c for c in items}

    def __len__(self) -> int:
        return len(self._by_slug)

    def __contains__(self, slug: object) -> bool:
        return slug in self._by_slug

    def __iter__(self) -> Iterator[Category]:
        return iter(self._by_slug.values())

    def get(self, slug: str) -> Category | None:
        return self._by_slug.get(slug)

    def slugs(self) -> tuple[str, ...]:
        return tuple(self._by_slug)

    def toplevel(self) -> list[Category]:
        return [c for c in self._by_slug.values() if c.parent is None]

    def subcategories(self, slug: str) -> list[Category]:
        """The direct subcategories of ``slug``."""
        return [c for c in self._by_slug.values() if c.parent == slug]

    def parents(self, slug: str) -> list[Category]:
        """The categories above ``slug``, the top-level one first."""
        found: list[Category] = []
        parent = self._by_slug[slug].parent
        while parent is not None:
            found.insert(0, self._by_slug[parent])
            parent = self._by_slug[parent].parent
        return found

    def under(self, slug: str) -> tuple[str, ...]:
        """``slug`` and every category below it (a search in a category finds the
        crates of its subcategories too, as on crates.io); none for an unknown slug."""
        if slug not in self._by_slug:
            return ()
        return tuple(s for s in self._by_slug if s == slug or s.startswith(slug + "::"))

    def split(self, asked: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``asked`` as (the categories of this list, the others), each once, in order."""
        valid: list[str] = []
        invalid: list[str] = []
        for slug in asked:
            target = valid if slug in self._by_slug else invalid
            if slug not in target:
                target.append(slug)
        return tuple(valid), tuple(invalid)


def check_categories(categories: Sequence[str]) -> None:
    """The publish-time limit on the number of categories (400 past it)."""
    if len(categories) > MAX_CATEGORIES:
        raise bad_request(
            f"Too many categories: {len(categories)} (max {MAX_CATEGORIES} per crate)"
        )


def check_keywords(keywords: Sequence[str]) -> tuple[str, ...]:
    """The keywords of a publish, checked (400 naming the first bad one) and lower-cased,
    each once, in order."""
    if len(keywords) > MAX_KEYWORDS:
        raise bad_request(f"Too many keywords: {len(keywords)} (max {MAX_KEYWORDS} per crate)")
    kept: list[str] = []
    for keyword in keywords:
        if len(keyword) > MAX_KEYWORD_LENGTH:
            raise bad_request(
                f"Invalid keyword `{shown(keyword[:40])}`: longer than "
                f"{MAX_KEYWORD_LENGTH} characters"
            )
        if not keyword.isascii() or not _KEYWORD.fullmatch(keyword):
            raise bad_request(
                f"Invalid keyword `{shown(keyword)}`: expected ASCII letters, digits, `_`, "
                "`-` or `+`, starting with a letter or digit"
            )
        lower = keyword.lower()
        if lower not in kept:
            kept.append(lower)
    return tuple(kept)


def keyword_key(keyword: str) -> str | None:
    """The stored form of a keyword asked for in a URL or a query (ASCII lower case),
    or None when no stored keyword can match it."""
    if not keyword.isascii() or not 0 < len(keyword) <= 200:
        return None
    return keyword.lower()


def default_categories() -> Categories:
    """The list shipped with trustpub (``categories.toml`` beside this module)."""
    text = resources.files("trustpub.registry").joinpath("categories.toml").read_text("utf-8")
    return parse_categories(text, "trustpub/registry/categories.toml")


def load_categories(path: str | Path) -> Categories:
    """The list in the TOML file ``path``; ``ConfigurationError`` naming what is wrong."""
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: category file not found") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: category file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the category file: {exc.strerror}") from None
    return parse_categories(text, str(path))


def parse_categories(text: str, source: str) -> Categories:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: invalid TOML: {exc}") from None
    if len(document) > MAX_ENTRIES:
        raise ConfigurationError(f"{source}: more than {MAX_ENTRIES} categories")
    raw: dict[str, tuple[str, str]] = {}
    for slug, entry in document.items():
        where = f"{source}: [{slug}]"
        if len(slug) > MAX_SLUG_LENGTH or not _SLUG.fullmatch(slug):
            raise ConfigurationError(
                f"{where}: a slug is lower-case ASCII letters, digits and `-`, with `::` "
                f"before a subcategory's part (at most {MAX_SLUG_LENGTH} characters)"
            )
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: expected a table with `name` and `description`")
        unknown = sorted(set(entry) - {"name", "description"})
        if unknown:
            raise ConfigurationError(f"{where}: unknown key(s): {', '.join(unknown)}")
        name = entry.get("name")
        if (
            not isinstance(name, str)
            or not name.strip()
            or "::" in name
            or len(name) > MAX_NAME_LENGTH
        ):
            raise ConfigurationError(
                f"{where}: name: expected a non-empty string without `::` "
                f"(at most {MAX_NAME_LENGTH} characters)"
            )
        description = entry.get("description", "")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
            raise ConfigurationError(
                f"{where}: description: expected a string (at most "
                f"{MAX_DESCRIPTION_LENGTH} characters)"
            )
        raw[slug] = (name, description.strip())
    items: list[Category] = []
    for slug, (name, description) in raw.items():
        head, sep, _ = slug.rpartition("::")
        full = name
        while sep:
            if head not in raw:
                raise ConfigurationError(
                    f"{source}: [{slug}]: its parent category `{head}` is not defined"
                )
            full = f"{raw[head][0]}::{full}"
            head, sep, _ = head.rpartition("::")
        items.append(Category(slug, full, description))
    return Categories(items)
