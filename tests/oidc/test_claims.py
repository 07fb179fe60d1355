"""Reading claims as strings: absent, empty and mistyped values are told apart."""

from __future__ import annotations

import pytest

from trustpub.errors import InvalidJWT
from trustpub.oidc.claims import VerifiedClaims, optional_str_claim, required_str_claim
from trustpub.oidc.issuers import GITHUB_ISSUER, Issuer

CLAIMS: dict[str, object] = {"present": "value", "empty": "", "number": 7, "list": ["a"]}


def test_optional_claim_is_the_string_or_none() -> None:
    assert optional_str_claim(CLAIMS, "present") == "value"
    assert optional_str_claim(CLAIMS, "empty") == ""
    assert optional_str_claim(CLAIMS, "absent") is None
    assert optional_str_claim({"null": None}, "null") is None


@pytest.mark.parametrize(("name", "type_name"), [("number", "int"), ("list", "list")])
def test_claim_of_another_type_is_refused(name: str, type_name: str) -> None:
    for read in (optional_str_claim, required_str_claim):
        with pytest.raises(InvalidJWT) as info:
            read(CLAIMS, name)
        assert info.value.detail == (
            f"Invalid JWT claim `{name}`: expected a string, got {type_name}"
        )


@pytest.mark.parametrize("name", ["empty", "absent"])
def test_required_claim_must_be_a_non_empty_string(name: str) -> None:
    with pytest.raises(InvalidJWT) as info:
        required_str_claim(CLAIMS, name)
    assert info.value.detail == f"Invalid JWT: missing required claim `{name}`"
    assert required_str_claim(CLAIMS, "present") == "value"


def test_verified_claims_read_through_the_same_rules() -> None:
    issuer = Issuer(GITHUB_ISSUER, "github")
    verified = VerifiedClaims(issuer, "jti", 1, 2, CLAIMS)
    assert verified.optional_str("present") == verified.required_str("present") == "value"
    assert verified.optional_str("absent") is None
    with pytest.raises(InvalidJWT, match="missing required claim `empty`"):
        verified.required_str("empty")


def test_a_claim_holding_a_lone_surrogate_is_refused_without_quoting_it() -> None:
    claims = {"environment": "rel\ud800", "fine": "r\u00e9l\u00e8ve"}
    assert optional_str_claim(claims, "fine") == "r\u00e9l\u00e8ve"
    for read in (optional_str_claim, required_str_claim):
        with pytest.raises(InvalidJWT) as info:
            read(claims, "environment")
        assert info.value.detail == "Invalid JWT claim `environment`: not valid Unicode text"
