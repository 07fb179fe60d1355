"""Webhook signing secrets, encrypted at rest.

A webhook's secret keys the HMAC of every delivery, so the server must read it back: it
cannot be hashed as API tokens are. It is stored encrypted (``webhooks.secret_enc``)
with a key the operator keeps outside the database: a leaked database or backup does
not give anyone the power to sign deliveries that receivers would trust.

``WebhookKeys`` holds one or more keys. The first encrypts; every one decrypts, so a
key is rotated by putting a new one first, re-encrypting (``trustpub registry webhooks
rekey``), then dropping the old one. A key file holds one key a line (32 random bytes
in URL-safe base64, as ``generate_key`` writes them); blank lines and ``#`` comments
are ignored.

Why AES-GCM from ``cryptography`` and not Fernet (``MultiFernet`` has the rotation we
want): Fernet has no associated data, and we bind each ciphertext to its row, the
webhook id and the crate id, so a ciphertext copied into another row (another crate's
subscription, by someone who can write the database but holds no key) does not
decrypt. What is written by hand here is only the framing: a stored value is
``v1:KEYID:BASE64URL(NONCE || CIPHERTEXT+TAG)``, where KEYID (8 hex digits of a
SHA-256 of the key, which tells nothing useful about a 256-bit key) names the key
that sealed it, so decryption picks the key and an error can say which is missing.
Nonces are 96 random bits per encryption: far below the 2^32 encryptions per key
where random GCM nonces stop being safe, for a table of subscriptions.

A secret no configured key opens fails its deliveries, not the worker: each is retried,
its state says so, and the log names the webhook and the key it needs
(``trustpub.notify.outbox``); opening the database logs the webhooks whose key is not
configured. It is not a readiness failure (``/readyz``): a replica without the key
still serves every publish and download, and taking it out of the load balancer would
stop those for a fault of the webhooks alone.

Without a configured key the registry keeps one in its data directory
(``KEY_FILE``, created 0600 on first start, with ``load_or_create``): one command
still runs the service, and replicas sharing the data directory share the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "webhook-secrets.key"
"""The key file a registry keeps in its directory when none is configured."""

_VERSION = "v1"
_NONCE = 12
_KEY_BYTES = 32


class WebhookKeyError(ValueError):
    """A key or key file that cannot be used (its text never includes a key)."""


class SecretUnreadable(Exception):
    """A stored secret that no configured key opens. Names the webhook, never a key or
    the secret."""

    def __init__(self, webhook_id: int, reason: str) -> None:
        super().__init__(f"webhook {webhook_id}: its secret cannot be decrypted ({reason})")
        self.webhook_id = webhook_id
        self.reason = reason


def generate_key() -> str:
    """A new key, as a key file holds it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"trustpub webhook secrets key\x00" + key).hexdigest()[:8]


def _associated(webhook_id: int, crate_id: int) -> bytes:
    # The row the ciphertext belongs to: moved elsewhere, it does not decrypt.
    return f"trustpub webhook secret\x00{webhook_id}\x00{crate_id}".encode("ascii")


@dataclass(frozen=True, slots=True)
class WebhookKeys:
    """The keys, first one current. Build with ``parse`` or ``load``."""

    _keys: tuple[tuple[str, AESGCM], ...] = field(repr=False)

    @classmethod
    def parse(cls, lines: Iterable[str], where: str) -> WebhookKeys:
        """Keys from text lines (one a line; blanks and ``#`` comments skipped)."""
        keys: list[tuple[str, AESGCM]] = []
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                raw = base64.urlsafe_b64decode(text.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = b""
            if len(raw) != _KEY_BYTES:
                raise WebhookKeyError(
                    f"{where}: key {number}: expected 32 bytes in URL-safe base64 "
                    "(make one with `trustpub registry webhooks new-key`)"
                )
            key_id = _key_id(raw)
            if any(k == key_id for k, _ in keys):
                raise WebhookKeyError(f"{where}: key {number} is listed twice")
            keys.append((key_id, AESGCM(raw)))
        if not keys:
            raise WebhookKeyError(f"{where}: no key (one key a line, the first encrypts)")
        return cls(tuple(keys))

    @classmethod
    def load(cls, path: Path) -> WebhookKeys:
        try:
            text = path.read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
            raise WebhookKeyError(f"cannot read {path}: {reason}") from None
        return cls.parse(text.splitlines(), str(path))

    @property
    def current(self) -> str:
        """The id of the key that encrypts."""
        return self._keys[0][0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self._keys)

    def seal(self, secret: str, webhook_id: int, crate_id: int) -> str:
        key_id, aead = self._keys[0]
        nonce = secrets.token_bytes(_NONCE)
        sealed = aead.encrypt(nonce, secret.encode("utf-8"), _associated(webhook_id, crate_id))
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{_VERSION}:{key_id}:{body}"

    def key_of(self, sealed: str) -> str | None:
        """The id of the key ``sealed`` names, if it is well formed."""
        parts = sealed.split(":")
        return parts[1] if len(parts) == 3 and parts[0] == _VERSION else None

    def open(self, sealed: str, webhook_id: int, crate_id: int) -> str:
        """The secret; ``SecretUnreadable`` if no configured key opens it for this row."""
        key_id = self.key_of(sealed)
        if key_id is None:
            raise SecretUnreadable(webhook_id, "not a stored secret this trustpub can read")
        aead = next((a for k, a in self._keys if k == key_id), None)
        if aead is None:
            raise SecretUnreadable(
                webhook_id,
                f"it was encrypted with key {key_id}, which is not among the configured "
                f"webhook secrets keys ({', '.join(self.ids)})",
            )
        try:
            raw = base64.urlsafe_b64decode(sealed.split(":")[2].encode("ascii"))
            plain = aead.decrypt(raw[:_NONCE], raw[_NONCE:], _associated(webhook_id, crate_id))
        except (InvalidTag, ValueError, binascii.Error):
            # A wrong key with a colliding id, a damaged value, or a value moved here
            # from another row: all the same to us, it is not this row's secret.
            raise SecretUnreadable(
                webhook_id, f"key {key_id} does not open it: damaged or not this row's"
            ) from None
        return plain.decode("utf-8")


def write_key_file(path: Path, key: str | None = None) -> None:
    """Create ``path`` holding one key (new unless given), readable by its owner only;
    ``FileExistsError`` if it exists. Written to a temporary name and linked into
    place, so a reader (another replica starting at the same moment) never sees it
    half written, and only one creator wins."""
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    # 0600 from the start: the key must never be briefly readable by others.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write((key or generate_key()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def load_or_create(path: Path) -> WebhookKeys:
    """The keys of ``path``, creating it with a new key when it does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_key_file(path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as exc:
            raise WebhookKeyError(f"cannot create {path}: {exc.strerror}") from None
    return WebhookKeys.load(path)
