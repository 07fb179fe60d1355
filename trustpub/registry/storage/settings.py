"""Where the registry keeps its ``.crate`` files: ``[registry] storage``, ``downloads``
and ``[registry.s3]`` of the service configuration.

- ``storage = "file:///PATH"``: a local directory (default: ``{data_dir}/registry``);
- ``storage = "s3://BUCKET/PREFIX"``: an S3-compatible object store, reached with the
  ``[registry.s3]`` settings; whatever is unset there comes from the standard ``AWS_*``
  environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_REGION``, ``AWS_ENDPOINT_URL``...), as every AWS client reads them;
- ``downloads = "stream"`` (trustpub sends the file) or ``"redirect"`` (a 302 to a
  presigned URL of the object, valid for a few minutes; ``s3://`` only).

Credentials are kept out of ``repr`` and of every message: URLs carrying a user or a
password are refused, so an error that names the store or its endpoint names no secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from trustpub.errors import ConfigurationError

DOWNLOAD_MODES = ("stream", "redirect")
ADDRESSING_STYLES = ("auto", "path", "virtual")
_S3_KEYS = ("endpoint_url", "region", "access_key_id", "secret_access_key", "addressing_style")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """``[registry.s3]``: None means "as the AWS environment variables say"."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """``url`` None: ``file://`` under the data directory."""

    url: str | None = None
    downloads: str = "stream"
    s3: S3Settings = field(default_factory=S3Settings)

    def local_root(self, default: Path) -> Path | None:
        """The directory of a ``file://`` store (``default`` when unset); None for S3."""
        if self.url is None:
            return default
        parts = urlsplit(self.url)
        return Path(unquote(parts.path)) if parts.scheme == "file" else None

    def s3_location(self) -> tuple[str, str]:
        """(bucket, key prefix ending in ``/`` or empty) of an ``s3://`` store."""
        assert self.url is not None
        parts = urlsplit(self.url)
        prefix = parts.path.strip("/")
        return parts.netloc, f"{prefix}/" if prefix else ""


def parse_storage(table: Mapping[str, Any], source: str) -> StorageSettings:
    """The storage keys of ``[registry]`` (``storage``, ``downloads``, ``s3``)."""
    url = table.get("storage")
    if url is not None:
        url = _storage_url(url, source)
    downloads = table.get("downloads", "stream")
    if downloads not in DOWNLOAD_MODES:
        raise ConfigurationError(
            f"{source}: registry.downloads: expected one of {', '.join(DOWNLOAD_MODES)}"
        )
    is_s3 = url is not None and url.startswith("s3://")
    if downloads == "redirect" and not is_s3:
        raise ConfigurationError(
            f'{source}: registry.downloads: "redirect" needs an s3:// storage '
            "(a file:// store has no URL to redirect to)"
        )
    s3 = S3Settings()
    if "s3" in table:
        s3 = _parse_s3(table["s3"], source)
    return StorageSettings(url, downloads, s3)


def _storage_url(value: object, source: str) -> str:
    where = f"{source}: registry.storage"
    if not isinstance(value, str) or "://" not in value:
        raise ConfigurationError(f"{where}: expected file:///PATH or s3://BUCKET/PREFIX")
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        # Said without the URL: it holds a secret.
        raise ConfigurationError(
            f"{where}: credentials do not belong in the URL; use [registry.s3] "
            "access_key_id and secret_access_key, or the AWS_* environment variables"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{where}: expected no query or fragment")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigurationError(f"{where}: expected file:///ABSOLUTE/PATH, got {value!r}")
        return value
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigurationError(f"{where}: expected s3://BUCKET/PREFIX, got {value!r}")
        return value
    raise ConfigurationError(
        f"{where}: expected file:///PATH or s3://BUCKET/PREFIX, got a {parts.scheme}:// URL"
    )


def _parse_s3(value: object, source: str) -> S3Settings:
    where = f"{source}: registry.s3"
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: expected a table")
    extra = sorted(set(value) - set(_S3_KEYS))
    if extra:
        raise ConfigurationError(f"{where}: unknown key(s): {', '.join(extra)}")
    for key in _S3_KEYS:
        if key in value and (not isinstance(value[key], str) or not value[key]):
            # The value is never echoed: it may be a secret.
            raise ConfigurationError(f"{where}.{key}: expected a non-empty string")
    style = value.get("addressing_style", "auto")
    if style not in ADDRESSING_STYLES:
        raise ConfigurationError(
            f"{where}.addressing_style: expected one of {', '.join(ADDRESSING_STYLES)}"
        )
    endpoint = value.get("endpoint_url")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{where}.endpoint_url: expected an http(s):// URL")
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(f"{where}.endpoint_url: credentials do not belong in the URL")
    if ("access_key_id" in value) != ("secret_access_key" in value):
        raise ConfigurationError(f"{where}: set access_key_id and secret_access_key together")
    return S3Settings(
        endpoint_url=endpoint,
        region=value.get("region"),
        access_key_id=value.get("access_key_id"),
        secret_access_key=value.get("secret_access_key"),
        addressing_style=style,
    )
