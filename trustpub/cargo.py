"""cargo's credentials file: store (or read) the token of one registry in
``$CARGO_HOME/credentials.toml``, leaving the rest of the file as it was.

The file is edited with tomlkit, which keeps comments, order, quoting and every table
it does not touch; only ``[registries.NAME] token`` changes. The file holds secrets: it
is replaced atomically and readable by its owner only.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tomlkit

__all__ = ["CredentialsError", "cargo_home", "read_token", "store_token", "write_private"]

# cargo's rule for a registry name in its configuration.
_REGISTRY_NAME = re.compile(r"[A-Za-z0-9_-]+")


class CredentialsError(Exception):
    """The credentials file cannot be read or updated; the message names the file."""


def cargo_home(explicit: str | None, env: Mapping[str, str]) -> Path:
    """``--cargo-home``, else ``$CARGO_HOME``, else ``~/.cargo``, as cargo looks."""
    return Path(explicit or env.get("CARGO_HOME") or Path.home() / ".cargo")


def check_registry_name(name: str) -> None:
    """A ``ValueError`` unless cargo accepts ``name`` as a registry name."""
    if not _REGISTRY_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a cargo registry name (ASCII letters, digits, '-' and '_')"
        )


def _load(path: Path) -> tomlkit.TOMLDocument:
    # Imported here: every trustpub command loads this module, few write credentials.
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return tomlkit.document()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise CredentialsError(f"{path} is not valid TOML ({exc}); fix it by hand") from None


def store_token(home: Path, registry: str, token: str) -> Path:
    """Set ``[registries.REGISTRY] token`` in ``home/credentials.toml``; return its path."""
    import tomlkit

    check_registry_name(registry)
    path = home / "credentials.toml"
    document = _load(path)
    registries = document.get("registries")
    if registries is None:
        # A super table writes as [registries.NAME] alone, as cargo itself writes it.
        registries = tomlkit.table(is_super_table=True)
        document["registries"] = registries
    if not isinstance(registries, MutableMapping):
        raise CredentialsError(f"{path}: `registries` is not a table; fix it by hand")
    entry = registries.get(registry)
    if entry is None:
        entry = tomlkit.table()
        registries[registry] = entry
    if not isinstance(entry, MutableMapping):
        raise CredentialsError(f"{path}: `registries.{registry}` is not a table; fix it by hand")
    entry["token"] = token
    home.mkdir(parents=True, exist_ok=True)
    _replace_private(path, tomlkit.dumps(document))
    return path


def read_token(home: Path, registry: str) -> str | None:
    """The token stored for ``registry``, or None."""
    check_registry_name(registry)
    path = home / "credentials.toml"
    registries = _load(path).get("registries")
    entry = registries.get(registry) if isinstance(registries, Mapping) else None
    token = entry.get("token") if isinstance(entry, Mapping) else None
    return str(token) if isinstance(token, str) and token else None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, also when it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # An existing file keeps its mode through O_CREAT: tighten it before writing.
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _replace_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a new owner-only file: a crash leaves the old
    file or the new one, never half of one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".credentials-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
