"""What ``cargo publish`` sends, parsed and validated before anything is stored.

The body is ``u32 LE length, JSON metadata, u32 LE length, .crate bytes``. Everything
here is pure (no database, no files): a request that fails here leaves no trace.

Both parsers that read hostile text here recurse on nesting (``json`` in C, ``tomllib``
in Python), so a few kilobytes of ``[[[[...`` would exhaust the stack: ``nesting_depth``
measures the depth first, with one regular expression that skips strings and comments
(C speed; a byte-by-byte Python loop over a large manifest would cost seconds), and
anything deeper than ``MAX_NESTING`` is refused before a parser sees it. Real metadata
nests four levels deep, a real ``Cargo.toml`` rarely more than three.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import tarfile
import tomllib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trustpub.registry.categories import check_categories, check_keywords
from trustpub.registry.errors import bad_request, too_large
from trustpub.registry.names import check_crate_name
from trustpub.registry.versions import Version, parse_version
from trustpub.text import encodable, shown

_FEATURE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+.-]*")
_DEP_NAME = re.compile(r"[A-Za-z0-9_-]+")
_RUST_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?")
DEP_KINDS = ("normal", "build", "dev")
MAX_DEPS = 500
MAX_FEATURES = 300
MAX_NESTING = 32
MANIFEST_DOCS = "https://doc.rust-lang.org/cargo/reference/manifest.html#package-metadata"

# One token of TOML (or JSON, whose strings are TOML basic strings): a string or a
# comment, skipped whole, or a bracket that opens or closes a level.
_NESTING_TOKEN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""'
    r"|'''.*?'''"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'[^'\n]*'"
    r"|#[^\n]*"
    r"|[\[\]{}]",
    re.DOTALL,
)


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of TOML or JSON ``text``, strings and comments aside.

    An unterminated string makes its opening quote unmatched; the scan then goes on as
    if it were not there, which can only count more brackets, never fewer than a
    parser would reach before failing on the same text.
    """
    depth = deepest = 0
    for match in _NESTING_TOKEN.finditer(text):
        lexeme = match.group()
        if lexeme in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif lexeme in ("]", "}"):
            depth = max(depth - 1, 0)
    return deepest


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits: a registry must not buffer or unpack unbounded input."""

    body: int = 12 * 1024 * 1024
    metadata: int = 1024 * 1024
    crate: int = 10 * 1024 * 1024
    unpacked: int = 128 * 1024 * 1024
    entries: int = 20_000


@dataclass(frozen=True, slots=True)
class Dependency:
    name: str
    """The real package name (cargo's ``name``)."""
    req: str
    features: tuple[str, ...]
    optional: bool
    default_features: bool
    target: str | None
    kind: str
    registry: str | None
    explicit_name_in_toml: str | None

    def index_json(self) -> dict[str, Any]:
        """The index form: a renamed dependency is listed under the name the manifest
        uses, with ``package`` naming the real crate."""
        entry: dict[str, Any] = {
            "name": self.explicit_name_in_toml or self.name,
            "req": self.req,
            "features": list(self.features),
            "optional": self.optional,
            "default_features": self.default_features,
            "target": self.target,
            "kind": self.kind,
            "registry": self.registry,
        }
        if self.explicit_name_in_toml is not None:
            entry["package"] = self.name
        return entry


@dataclass(frozen=True, slots=True)
class PublishMetadata:
    name: str
    vers: str
    version: Version
    deps: tuple[Dependency, ...]
    features: Mapping[str, tuple[str, ...]]
    links: str | None
    rust_version: str | None
    description: str | None = None
    license: str | None = None
    license_file: str | None = None
    homepage: str | None = None
    documentation: str | None = None
    repository: str | None = None
    readme: str | None = None
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    def index_entry(self, cksum: str, yanked: bool = False) -> dict[str, Any]:
        """The version's line in the sparse index."""
        features: dict[str, list[str]] = {}
        features2: dict[str, list[str]] = {}
        for name, values in sorted(self.features.items()):
            # `dep:` and `?/` need cargo 1.60+; older cargo ignores `features2`, so
            # features using that syntax go there, as on crates.io.
            new_syntax = any(v.startswith("dep:") or "?/" in v for v in values)
            (features2 if new_syntax else features)[name] = list(values)
        entry: dict[str, Any] = {
            "name": self.name,
            "vers": self.vers,
            "deps": [d.index_json() for d in self.deps],
            "cksum": cksum,
            "features": features,
            "yanked": yanked,
            "links": self.links,
            "v": 2 if features2 else 1,
        }
        if features2:
            entry["features2"] = features2
        if self.rust_version is not None:
            entry["rust_version"] = self.rust_version
        return entry


@dataclass(frozen=True, slots=True)
class PublishRequest:
    metadata: PublishMetadata
    crate: bytes = field(repr=False)

    @property
    def cksum(self) -> str:
        return hashlib.sha256(self.crate).hexdigest()


def split_body(body: bytes, limits: Limits) -> tuple[bytes, bytes]:
    """The metadata JSON and the .crate bytes from a publish body."""
    view = memoryview(body)
    if len(view) < 4:
        raise bad_request("Invalid publish request: the body ends before the metadata length")
    (meta_len,) = struct.unpack_from("<I", view, 0)
    if meta_len > limits.metadata:
        raise too_large(f"The publish metadata is too large (max {limits.metadata} bytes)")
    if 4 + meta_len > len(view):
        raise bad_request(
            f"Invalid publish request: the metadata length ({meta_len}) exceeds the body"
        )
    metadata = bytes(view[4 : 4 + meta_len])
    offset = 4 + meta_len
    if len(view) < offset + 4:
        raise bad_request("Invalid publish request: the body ends before the .crate length")
    (crate_len,) = struct.unpack_from("<I", view, offset)
    offset += 4
    if crate_len > limits.crate:
        raise too_large(f"The .crate file is too large (max {limits.crate} bytes)")
    if offset + crate_len > len(view):
        raise bad_request(
            f"Invalid publish request: the .crate length ({crate_len}) exceeds the body"
        )
    if offset + crate_len != len(view):
        raise bad_request("Invalid publish request: unexpected bytes after the .crate file")
    return metadata, bytes(view[offset : offset + crate_len])


def parse_publish(
    body: bytes,
    limits: Limits,
    authorize: Callable[[PublishMetadata], None] | None = None,
    *,
    require_metadata: bool = True,
) -> PublishRequest:
    """Split, parse and validate a publish body, including the .crate archive.

    ``authorize`` receives the validated metadata BEFORE the .crate is decompressed and
    raises to refuse: a caller with no right to publish that name cannot make the
    registry unpack anything (a gzip bomb costs it a JSON parse, nothing more).
    ``require_metadata``: refuse a crate without a description or a license
    (``check_required_metadata``), as crates.io does.
    """
    raw_metadata, crate = split_body(body, limits)
    try:
        text = raw_metadata.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("Invalid publish metadata: not valid JSON (not UTF-8 text)") from None
    if nesting_depth(text) > MAX_NESTING:
        raise bad_request(f"Invalid publish metadata: nested more than {MAX_NESTING} levels deep")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad_request(f"Invalid publish metadata: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad_request("Invalid publish metadata: expected a JSON object")
    _check_text(data)
    metadata = parse_metadata(data)
    if authorize is not None:
        authorize(metadata)
    if require_metadata:
        check_required_metadata(metadata)
    check_crate_archive(crate, metadata.name, metadata.vers, limits)
    return PublishRequest(metadata, crate)


# -- metadata --------------------------------------------------------------------------


def _check_text(data: object) -> None:
    """Refuse metadata holding a string that is not valid Unicode text.

    JSON escapes can spell a lone surrogate (``"\\ud800"``); no cargo sends one, and the
    index, the database and every message quoting the value need encodable text.
    """
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not encodable(item):
                raise bad_request(
                    f"Invalid publish metadata: `{shown(item)}` is not valid Unicode text"
                )
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


class _Fields:
    """Typed access to a JSON object, with messages naming the field."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def fail(self, key: str, expected: str) -> None:
        raise bad_request(f"Invalid publish metadata: `{self.where}{key}` must be {expected}")

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            self.fail(key, "a string")
        assert isinstance(value, str)
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(key, "a string or null")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "true or false")
        assert isinstance(value, bool)
        return value

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "a list of strings")
        assert isinstance(value, list)
        return tuple(value)


def parse_metadata(data: Mapping[str, Any]) -> PublishMetadata:
    fields = _Fields(data, "")
    name = fields.text("name")
    check_crate_name(name)
    vers = fields.text("vers")
    version = parse_version(vers)
    deps_raw = data.get("deps", [])
    if not isinstance(deps_raw, list):
        fields.fail("deps", "a list")
    if len(deps_raw) > MAX_DEPS:
        raise bad_request(f"Too many dependencies (max {MAX_DEPS})")
    deps = tuple(_parse_dep(d, i) for i, d in enumerate(deps_raw))
    features = _parse_features(data.get("features", {}))
    links = fields.opt_text("links")
    rust_version = fields.opt_text("rust_version")
    if rust_version is not None and not _RUST_VERSION.fullmatch(rust_version):
        raise bad_request(
            f"Invalid `rust_version` `{shown(rust_version)}`: expected a Rust version like `1.70`"
        )
    # Checked as crates.io does (categories.py); unknown categories are dropped later,
    # against the registry's list, and reported in the publish answer.
    keywords = check_keywords(fields.text_list("keywords"))
    categories = fields.text_list("categories")
    check_categories(categories)
    return PublishMetadata(
        name=name,
        vers=vers,
        version=version,
        deps=deps,
        features=features,
        links=links,
        rust_version=rust_version,
        description=fields.opt_text("description"),
        license=fields.opt_text("license"),
        license_file=fields.opt_text("license_file"),
        homepage=fields.opt_text("homepage"),
        documentation=fields.opt_text("documentation"),
        repository=fields.opt_text("repository"),
        readme=fields.opt_text("readme"),
        keywords=keywords,
        categories=categories,
        authors=fields.text_list("authors"),
    )


def check_required_metadata(metadata: PublishMetadata) -> None:
    """Refuse a crate without a description or a license (``license``, or
    ``license-file`` for one that has no SPDX expression): crates.io's rule, so users
    learn what a crate is and on what terms they may use it. Blank counts as missing.
    The error names every missing field and where cargo reads them from."""
    missing = []
    if not (metadata.description or "").strip():
        missing.append("description")
    if not (metadata.license or "").strip() and not (metadata.license_file or "").strip():
        missing.append("license")
    if missing:
        raise bad_request(
            f"missing or empty metadata fields: {', '.join(missing)}. Set `description` "
            "and `license` (or `license-file`) in the [package] section of Cargo.toml; "
            f"see {MANIFEST_DOCS}"
        )


def _parse_dep(raw: object, position: int) -> Dependency:
    where = f"deps[{position}]."
    if not isinstance(raw, dict):
        raise bad_request(f"Invalid publish metadata: `deps[{position}]` must be an object")
    f = _Fields(raw, where)
    name = f.text("name")
    if not _DEP_NAME.fullmatch(name) or len(name) > 64:
        raise bad_request(f"Invalid dependency name `{shown(name)}`")
    req = f.text("version_req")
    if not req.strip() or len(req) > 256:
        raise bad_request(f"Invalid version requirement for dependency `{shown(name)}`")
    kind = raw.get("kind") or "normal"
    if kind not in DEP_KINDS:
        f.fail("kind", "one of normal, build, dev")
    explicit = f.opt_text("explicit_name_in_toml")
    if explicit is not None and (not _DEP_NAME.fullmatch(explicit) or len(explicit) > 64):
        raise bad_request(f"Invalid dependency rename `{shown(explicit)}` for `{shown(name)}`")
    return Dependency(
        name=name,
        req=req,
        features=f.text_list("features"),
        optional=f.flag("optional", False),
        default_features=f.flag("default_features", True),
        target=f.opt_text("target"),
        kind=str(kind),
        registry=f.opt_text("registry"),
        explicit_name_in_toml=explicit,
    )


def _parse_features(raw: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise bad_request("Invalid publish metadata: `features` must be an object")
    if len(raw) > MAX_FEATURES:
        raise bad_request(f"Too many features (max {MAX_FEATURES})")
    features: dict[str, tuple[str, ...]] = {}
    for name, values in raw.items():
        if not _FEATURE.fullmatch(name) or len(name) > 64:
            raise bad_request(f"Invalid feature name `{shown(name)}`")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad_request(
                f"Invalid publish metadata: feature `{shown(name)}` must be a list of strings"
            )
        features[name] = tuple(values)
    return features


# -- the .crate archive ----------------------------------------------------------------


def check_crate_archive(crate: bytes, name: str, vers: str, limits: Limits) -> None:
    """Refuse a .crate that is not a gzip tarball of ``name-vers/`` with its Cargo.toml.

    Decompression is capped, so a small gzip bomb cannot exhaust memory; links,
    devices and paths escaping the directory are refused, because cargo unpacks
    downloaded archives on every user's machine.
    """
    prefix = f"{name}-{vers}"
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        tar_bytes = decompressor.decompress(crate, limits.unpacked + 1)
    except zlib.error:
        raise bad_request("Invalid .crate file: not a gzip archive") from None
    if len(tar_bytes) > limits.unpacked or decompressor.unconsumed_tail:
        raise too_large(f"Invalid .crate file: unpacks to more than {limits.unpacked} bytes")
    if not decompressor.eof:
        raise bad_request("Invalid .crate file: the gzip stream is truncated")
    if decompressor.unused_data:
        raise bad_request("Invalid .crate file: unexpected data after the gzip stream")
    manifest: bytes | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as archive:
            for count, member in enumerate(archive, start=1):
                if count > limits.entries:
                    raise bad_request(f"Invalid .crate file: more than {limits.entries} entries")
                _check_member(member, prefix)
                if member.name == f"{prefix}/Cargo.toml" and member.isfile():
                    extracted = archive.extractfile(member)
                    manifest = extracted.read() if extracted is not None else None
    except tarfile.TarError as exc:
        raise bad_request(f"Invalid .crate file: not a valid tar archive ({exc})") from None
    if manifest is None:
        raise bad_request(f"Invalid .crate file: missing `{prefix}/Cargo.toml`")
    _check_manifest(manifest, name, vers)


def _check_member(member: tarfile.TarInfo, prefix: str) -> None:
    path = member.name
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or ".." in parts or parts[0] != prefix:
        raise bad_request(f"Invalid .crate file: entry `{shown(path)}` is outside `{prefix}/`")
    if not (member.isfile() or member.isdir()):
        raise bad_request(
            f"Invalid .crate file: entry `{shown(path)}` is not a regular file or directory"
        )


def _check_manifest(manifest: bytes, name: str, vers: str) -> None:
    try:
        text = manifest.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("Invalid .crate file: `Cargo.toml` is not valid UTF-8") from None
    if nesting_depth(text) > MAX_NESTING:
        raise bad_request(
            f"Invalid .crate file: `Cargo.toml` is nested more than {MAX_NESTING} levels deep"
        )
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise bad_request("Invalid .crate file: `Cargo.toml` is not valid TOML") from None
    package = document.get("package")
    if not isinstance(package, dict):
        raise bad_request("Invalid .crate file: `Cargo.toml` has no [package] table")
    if package.get("name") != name:
        named = shown(str(package.get("name")))
        raise bad_request(
            f"Invalid .crate file: `Cargo.toml` names package `{named}`, "
            f"but the metadata says `{name}`"
        )
    if package.get("version") != vers:
        version = shown(str(package.get("version")))
        raise bad_request(
            f"Invalid .crate file: `Cargo.toml` has version `{version}`, "
            f"but the metadata says `{vers}`"
        )
