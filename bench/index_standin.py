"""STAND-IN for ``trustpub registry index export DIR`` (being written on another branch).

Used by ``bench/load.py`` only while ``trustpub registry index export --help`` fails: it
writes the sparse index files the nginx scenario serves, fetched from a running service
(``config.json`` and one file per named crate, at the sparse index's paths), so nginx
serves exactly the bytes the service does. Not a way to export an index: it knows only
the crates it is told about and writes once. Remove it when the export command lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx


def index_path(name: str) -> str:
    """The sparse index path of a crate (cargo's layout: 1/, 2/, 3/x/, ab/cd/)."""
    lower = name.lower()
    if len(lower) <= 2:
        return f"{len(lower)}/{lower}"
    if len(lower) == 3:
        return f"3/{lower[0]}/{lower}"
    return f"{lower[:2]}/{lower[2:4]}/{lower}"


def write_index(url: str, crates: Sequence[str], directory: Path) -> None:
    """Write ``config.json`` and the index files of ``crates`` from the service at ``url``."""
    directory.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=url, timeout=30) as client:
        for path in ["config.json", *(index_path(name) for name in crates)]:
            response = client.get(f"/index/{path}")
            response.raise_for_status()
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(response.content)
