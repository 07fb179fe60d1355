"""Configured issuers: exact URLs, https only (plain http only for a local issuer)."""

from __future__ import annotations

import pytest

from trustpub.errors import ConfigurationError
from trustpub.oidc.issuers import DEFAULT_ISSUERS, GITHUB_ISSUER, Issuer, is_loopback_host


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost.example", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("LOCALHOST", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


@pytest.mark.parametrize(
    ("url", "development"),
    [
        ("https://token.actions.githubusercontent.com", False),
        ("https://gitlab.example:8443/sub", False),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:9000", True),
        ("http://[::1]:9000", True),
    ],
)
def test_valid_issuers(url: str, development: bool) -> None:
    assert Issuer(url, "gitlab", development).url == url


@pytest.mark.parametrize(
    ("url", "provider", "development", "message"),
    [
        ("https://x.example", "bitbucket", False, "unknown provider 'bitbucket'"),
        ("https://x.example?a=1", "github", False, "expected an absolute URL"),
        ("https://x.example#f", "github", False, "expected an absolute URL"),
        ("https://user@x.example", "github", False, "expected an absolute URL"),
        ("/relative", "github", False, "expected an absolute URL"),
        ("https://x.example/", "github", False, "must not end with '/'"),
        ("http://x.example", "github", False, "must use https"),
        ("http://x.example", "github", True, "must use https"),
        ("http://127.0.0.1:8080", "github", False, "must use https"),
        ("ftp://127.0.0.1", "github", True, "must use https"),
    ],
)
def test_invalid_issuers_are_refused(
    url: str, provider: str, development: bool, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Issuer(url, provider, development)  # type: ignore[arg-type]


def test_host_is_the_lower_cased_network_location() -> None:
    assert Issuer("https://GitLab.Example:8443/x", "gitlab").host == "gitlab.example:8443"
    assert [i.url for i in DEFAULT_ISSUERS] == [GITHUB_ISSUER, "https://gitlab.com"]
    assert [i.provider for i in DEFAULT_ISSUERS] == ["github", "gitlab"]
