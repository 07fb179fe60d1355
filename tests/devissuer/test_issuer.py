from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.devissuer.conftest import ISSUER_URL
from trustpub.devissuer import DevIssuer, key_thumbprint, load_key, save_key


def verify(issuer: DevIssuer, token: str, audience: str) -> dict[str, Any]:
    """Verify as a relying party would: key from the published JWKS, RS256 only."""
    jwk = issuer.jwks()["keys"][0]
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    public = jwt.PyJWK(jwk).key
    claims: dict[str, Any] = jwt.decode(
        token,
        public,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer.url,
        options={
            "verify_signature": True,
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
            "require": ["iss", "aud", "exp", "iat", "jti"],
        },
    )
    return claims


def test_minted_token_verifies_against_the_published_jwks(issuer: DevIssuer) -> None:
    token = issuer.mint("reg.example", environment="release")
    claims = verify(issuer, token, "reg.example")
    assert claims["iss"] == ISSUER_URL
    assert claims["environment"] == "release"
    assert claims["exp"] - claims["iat"] == 300


def test_header_is_rs256_with_kid_and_jwt_type(issuer: DevIssuer) -> None:
    header = jwt.get_unverified_header(issuer.mint("a"))
    assert header == {"alg": "RS256", "kid": issuer.kid, "typ": "JWT"}


def test_constructor_overrides_apply_to_every_token_and_mint_overrides_win(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    issuer = DevIssuer(
        ISSUER_URL, key=rsa_key, claims_overrides={"repository": "me/crate", "actor": "me"}
    )
    claims = verify(issuer, issuer.mint("a", actor="you"), "a")
    assert claims["repository"] == "me/crate"
    assert claims["repository_owner"] == "me"
    assert claims["actor"] == "you"


def test_lifetime_and_clock_set_the_token_times(rsa_key: rsa.RSAPrivateKey) -> None:
    issuer = DevIssuer(ISSUER_URL, key=rsa_key, lifetime=60, clock=lambda: 1_000.7)
    claims = issuer.claims("a")
    assert (claims["iat"], claims["exp"]) == (1000, 1060)


def test_kid_defaults_to_the_key_thumbprint_and_can_be_fixed(rsa_key: rsa.RSAPrivateKey) -> None:
    assert DevIssuer(ISSUER_URL, key=rsa_key).kid == key_thumbprint(rsa_key)
    assert DevIssuer(ISSUER_URL, key=rsa_key, kid="k1").jwks()["keys"][0]["kid"] == "k1"


def test_jwks_publishes_only_the_public_half(issuer: DevIssuer) -> None:
    (jwk,) = issuer.jwks()["keys"]
    assert set(jwk) == {"kty", "n", "e", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")


def test_discovery_names_the_issuer_and_its_jwks(issuer: DevIssuer) -> None:
    doc = issuer.discovery()
    assert doc["issuer"] == ISSUER_URL
    assert doc["jwks_uri"] == f"{ISSUER_URL}/.well-known/jwks"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "repository_owner_id" in doc["claims_supported"]


def test_trailing_slash_is_dropped_from_the_url(rsa_key: rsa.RSAPrivateKey) -> None:
    assert DevIssuer(ISSUER_URL + "/", key=rsa_key).url == ISSUER_URL


def test_trustpub_issuer_is_a_development_issuer(issuer: DevIssuer) -> None:
    configured = issuer.trustpub_issuer()
    assert (configured.url, configured.provider, configured.development) == (
        ISSUER_URL,
        "github",
        True,
    )


def test_actions_env_points_at_the_token_endpoint(issuer: DevIssuer) -> None:
    env = issuer.actions_env()
    assert env["ACTIONS_ID_TOKEN_REQUEST_URL"] == f"{ISSUER_URL}/token?api-version=2.0"
    assert env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == issuer.request_token


def test_request_tokens_are_random_unless_given(rsa_key: rsa.RSAPrivateKey) -> None:
    a, b = DevIssuer(ISSUER_URL, key=rsa_key), DevIssuer(ISSUER_URL, key=rsa_key)
    assert a.request_token != b.request_token
    assert len(a.request_token) >= 32
    assert DevIssuer(ISSUER_URL, key=rsa_key, request_token="s3cret").request_token == "s3cret"


def test_check_request_token(issuer: DevIssuer) -> None:
    assert issuer.check_request_token(issuer.request_token)
    assert not issuer.check_request_token(issuer.request_token + "x")
    assert not issuer.check_request_token("")


def test_sign_signs_arbitrary_claims(issuer: DevIssuer) -> None:
    token = issuer.sign({"iss": issuer.url, "aud": ["a", "b"]})
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == ["a", "b"]


def test_invalid_arguments_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="provider"):
        DevIssuer(ISSUER_URL, key=rsa_key, provider="jenkins")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lifetime"):
        DevIssuer(ISSUER_URL, key=rsa_key, lifetime=0)


def test_saved_key_is_private_and_loads_back(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "issuer.pem"
    save_key(rsa_key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_thumbprint(load_key(path)) == key_thumbprint(rsa_key)


def test_save_key_never_overwrites(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "issuer.pem"
    path.write_text("keep me")
    with pytest.raises(FileExistsError):
        save_key(rsa_key, path)
    assert path.read_text() == "keep me"


def test_load_key_refuses_a_non_rsa_key(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not an RSA private key"):
        load_key(path)
