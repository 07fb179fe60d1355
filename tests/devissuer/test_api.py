"""Pins the dev issuer's public surface: other tests and tools import these names."""

from __future__ import annotations

import inspect

import trustpub.devissuer
from trustpub.devissuer import DevIssuer, serve_in_thread


def test_exported_members() -> None:
    assert sorted(trustpub.devissuer.__all__) == [
        "DEFAULT_LIFETIME",
        "DevIssuer",
        "build_claims",
        "create_app",
        "generate_key",
        "key_thumbprint",
        "load_key",
        "save_key",
        "serve_in_thread",
    ]
    for name in trustpub.devissuer.__all__:
        assert hasattr(trustpub.devissuer, name)


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
