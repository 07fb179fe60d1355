"""``S3Storage``: the .crate files in an S3-compatible object store
(``s3://BUCKET/PREFIX``), through boto3, AWS's own client (request signing, retries,
pagination and presigning are its job, not ours).

Keys are ``{PREFIX}/crates/{name}/{name}-{version}.crate``, as on disk. A publish keeps
the upload in memory (``stage``: the body is already there, bounded by the registry's
size limit), writes the object inside the metadata transaction, before the commit
(``place``, with its MD5 so the store refuses a corrupted body), and deletes it if the
version proves unrecorded (``remove``; a failed COMMIT is read back first, see
``RegistryDB.publish``). A crash between the write and the commit leaves an object no
version names; ``sweep_orphans`` lists the objects and deletes those, at every start,
holding the database's writer lock. Nothing is ever staged in the store.

``check_writable`` writes and deletes a small probe object under ``{PREFIX}/tmp/``; the
bucket is the operator's to create. Downloads can be redirected to a presigned GET URL
valid for ``PRESIGNED_URL_SECONDS``. The client is thread-safe (boto3 clients are; only
sessions are not), built once in ``open`` and shared by the worker threads.

Credentials come from ``[registry.s3]`` or, where unset there, from boto3's usual chain
(``AWS_*`` environment variables, shared config files...). They are never logged: errors
carry the S3 error code and operation, and the store is named as ``s3://BUCKET/PREFIX``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from trustpub.registry.db import StorageUnavailable
from trustpub.registry.storage import PRESIGNED_URL_SECONDS, StoredFile, crate_key
from trustpub.registry.storage.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger("trustpub.registry")

CHUNK = 64 * 1024
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True, slots=True)
class StagedObject:
    """An upload held for ``place``: its bytes and their MD5 (base64, as S3 wants)."""

    data: bytes = field(repr=False)
    md5: str


class S3Storage:
    """A ``CrateStorage`` in an S3 bucket; see the module docstring."""

    def __init__(
        self, bucket: str, prefix: str, settings: S3Settings, *, client: S3Client | None = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._settings = settings
        self._client = client

    @property
    def location(self) -> str:
        """The store as operators configure it; no endpoint, no credential."""
        return f"s3://{self.bucket}/{self.prefix}"

    def open(self) -> None:
        if self._client is None:
            self._client = self._build_client()
        self.check_writable(0)

    def check_writable(self, min_free: int) -> None:
        # An object store has no free space to ask about: min_free is not checked.
        key = f"{self.prefix}tmp/.probe-{secrets.token_hex(8)}"
        with self._errors("the crate object store is not writable"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"\0")
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def stage(self, data: bytes) -> StagedObject:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        return StagedObject(data, md5)

    def place(self, staged: StagedObject, name: str, version: str) -> None:
        with self._errors("cannot write a .crate object"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(name, version),
                Body=staged.data,
                ContentMD5=staged.md5,
                ContentType="application/gzip",
            )

    def remove(self, name: str, version: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name, version))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            # Not raised: the caller is raising the error that made this necessary.
            self._failure(f"cannot remove an unrecorded .crate object: {_reason(exc)}")

    def discard(self, staged: StagedObject) -> None:
        pass  # held in memory only

    def get(self, name: str, version: str) -> StoredFile | None:
        with self._errors("cannot read a .crate object"):
            try:
                got = self.client.get_object(Bucket=self.bucket, Key=self._key(name, version))
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
        return StoredFile(got["ContentLength"], self._chunks(got["Body"]))

    def exists(self, name: str, version: str) -> bool:
        with self._errors("cannot read a .crate object"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(name, version))
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _MISSING:
                    return False
                raise
        return True

    def list_keys(self) -> list[str]:
        found: list[str] = []
        with self._errors("cannot list the .crate objects"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}crates/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].removeprefix(self.prefix)
                    if key.endswith(".crate"):
                        found.append(key)
        return sorted(found)

    def sweep_orphans(self, published: Collection[tuple[str, str]]) -> list[str]:
        expected = {crate_key(name, num) for name, num in published}
        removed = [key for key in self.list_keys() if key not in expected]
        with self._errors("cannot sweep orphan .crate objects"):
            for key in removed:
                self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        if removed:
            log.warning(
                "removed .crate objects that no version names (left by a crash during a publish)",
                extra={"fields": {"store": self.location, "objects": removed}},
            )
        return removed

    def download_url(self, name: str, version: str) -> str | None:
        filename = crate_key(name, version).rsplit("/", 1)[-1]
        with self._errors("cannot presign a download URL"):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(name, version),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=PRESIGNED_URL_SECONDS,
            )
        return url

    # -- internals -------------------------------------------------------------------------

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise StorageUnavailable(f"registry object store {self.location}: not opened")
        return self._client

    def _build_client(self) -> S3Client:
        s = self._settings
        config = botocore.config.Config(
            # SigV4 everywhere, presigned URLs included (they would otherwise be SigV2).
            signature_version="s3v4",
            s3={"addressing_style": s.addressing_style},  # type: ignore[arg-type]  # a str checked by settings
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=30,
            # One connection per worker thread anyio may run at once (its default: 40).
            max_pool_connections=40,
        )
        # A session of our own: boto3's default one is shared and not thread-safe.
        session = boto3.session.Session()
        with self._errors("cannot configure the S3 client"):
            client: S3Client = session.client(
                "s3",
                endpoint_url=s.endpoint_url,
                region_name=s.region,
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key,
                config=config,
            )
        return client

    def _key(self, name: str, version: str) -> str:
        return self.prefix + crate_key(name, version)

    def _chunks(self, body: Any) -> Iterator[bytes]:
        try:
            with self._errors("cannot read a .crate object"):
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def _failure(self, reason: str) -> StorageUnavailable:
        """Log an outage and return the error to raise."""
        detail = f"registry object store {self.location}: {reason}"
        log.warning(detail)
        return StorageUnavailable(detail)

    def _errors(self, what: str) -> _Errors:
        return _Errors(self, what)


class _Errors:
    """``with``: boto3's errors (and a lost connection) become ``StorageUnavailable``."""

    def __init__(self, store: S3Storage, what: str) -> None:
        self._store, self._what = store, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
            raise self._store._failure(f"{self._what}: {_reason(exc)}") from exc


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: Exception) -> str:
    """What failed, without a secret: the S3 error code and operation for a refusal (the
    message of a signature error may quote the string that was signed), the class and
    message of a connection or configuration error (their messages name the endpoint,
    which ``[registry.s3]`` refuses to carry credentials)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return f"{_code(exc) or 'error'} from {exc.operation_name}"
    return f"{type(exc).__name__}: {exc}"
