"""Building what cargo sends: .crate archives, metadata and publish bodies."""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
from typing import Any


def manifest(name: str, vers: str) -> bytes:
    return f'[package]\nname = "{name}"\nversion = "{vers}"\nedition = "2021"\n'.encode()


def make_crate(
    name: str,
    vers: str,
    *,
    files: dict[str, bytes] | None = None,
    prefix: str | None = None,
    with_manifest: bool = True,
    extra: list[tarfile.TarInfo] | None = None,
) -> bytes:
    """A gzip tarball shaped like ``cargo package`` output."""
    root = prefix if prefix is not None else f"{name}-{vers}"
    contents: dict[str, bytes] = {}
    if with_manifest:
        contents["Cargo.toml"] = manifest(name, vers)
    contents["src/lib.rs"] = b"pub fn hello() {}\n"
    contents.update(files or {})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in contents.items():
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra or []:
            archive.addfile(info)
    return gzip.compress(buffer.getvalue(), mtime=0)


def metadata(name: str, vers: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "vers": vers,
        "deps": [],
        "features": {},
        "authors": [],
        "description": f"the {name} crate",
        "license": "MIT",
        "keywords": [],
        "categories": [],
        "links": None,
        "rust_version": None,
    }
    data.update(fields)
    return data


def publish_body(meta: dict[str, Any] | bytes, crate: bytes) -> bytes:
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return struct.pack("<I", len(raw)) + raw + struct.pack("<I", len(crate)) + crate


def body_for(name: str, vers: str, **fields: Any) -> bytes:
    return publish_body(metadata(name, vers, **fields), make_crate(name, vers))


def dep(name: str, req: str = "^1", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "version_req": req,
        "features": [],
        "optional": False,
        "default_features": True,
        "target": None,
        "kind": "normal",
        "registry": None,
    }
    data.update(fields)
    return data
