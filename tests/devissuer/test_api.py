"""Pins the dev issuer's call signatures, which other tests and tools rely on (its
exported names are pinned with every package's in tests/test_exported_members.py)."""

from __future__ import annotations

import inspect

from trustpub.devissuer import DevIssuer, serve_in_thread


def test_dev_issuer_signature() -> None:
    params = inspect.signature(DevIssuer).parameters
    assert list(params) == [
        "url",
        "key",
        "kid",
        "provider",
        "claims_overrides",
        "request_token",
        "lifetime",
        "audience",
        "clock",
    ]
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "url")


def test_serve_in_thread_takes_only_keywords() -> None:
    params = inspect.signature(serve_in_thread).parameters
    assert params["host"].default == "127.0.0.1"
    assert params["port"].default == 0
