"""The one unverified decoder, for diagnostics: it reads claims and checks nothing."""

from __future__ import annotations

import pytest

from trustpub.devissuer import DevIssuer, generate_key
from trustpub.oidc.unverified import decode_unverified_claims


def test_claims_are_read_from_a_token_no_issuer_trusts() -> None:
    # A throwaway key, an audience nobody expects, long expired: all read all the same.
    issuer = DevIssuer("http://127.0.0.1:8090", key=generate_key(), clock=lambda: 1000)
    token = issuer.mint("nobody.example", repository="octo-org/octo-lib")
    claims = decode_unverified_claims(token)
    assert claims is not None
    assert (claims["aud"], claims["repository"], claims["exp"]) == (
        "nobody.example",
        "octo-org/octo-lib",
        1300,
    )


def test_surrounding_white_space_is_ignored() -> None:
    token = DevIssuer("http://127.0.0.1:8090", key=generate_key()).mint("a")
    assert decode_unverified_claims(f"  {token}\n") == decode_unverified_claims(token)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "a.b", "a.b.c.d", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "e30.W10.c2ln"],
)
def test_anything_else_is_none(text: str) -> None:
    assert decode_unverified_claims(text) is None
