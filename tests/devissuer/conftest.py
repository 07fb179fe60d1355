"""Fixtures for the dev issuer tests: one real RSA key per session (generation is slow)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from trustpub.devissuer import DevIssuer, generate_key

ISSUER_URL = "http://127.0.0.1:8090"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture
def issuer(rsa_key: rsa.RSAPrivateKey) -> DevIssuer:
    return DevIssuer(ISSUER_URL, key=rsa_key, clock=lambda: 1_800_000_000)
