"""Policies and claims built in memory, for matching tests."""

from __future__ import annotations

from typing import Any

from trustpub.grants import Operation
from trustpub.oidc.claims import VerifiedClaims
from trustpub.oidc.issuers import GITHUB_ISSUER, GITLAB_ISSUER, Issuer
from trustpub.policies import JobWorkflowRule, Policy, RefPattern

GITHUB = Issuer(GITHUB_ISSUER, "github")
GITLAB = Issuer(GITLAB_ISSUER, "gitlab")
GHES = Issuer("https://ghe.example.com/_services/token", "github")


def github_policy(name: str = "release", **overrides: Any) -> Policy:
    fields: dict[str, Any] = {
        "file": "test.toml",
        "name": name,
        "provider": "github",
        "issuer": GITHUB_ISSUER,
        "crates": ("octo-lib",),
        "repository": "octo-org/octo-lib",
        "workflow": "release.yml",
        "repository_owner_id": "131804563",
    }
    fields.update(overrides)
    if isinstance(fields.get("refs"), list):
        fields["refs"] = tuple(RefPattern.compile(r) for r in fields["refs"])
    return Policy(**fields)


def gitlab_policy(name: str = "release", **overrides: Any) -> Policy:
    fields: dict[str, Any] = {
        "file": "test.toml",
        "name": name,
        "provider": "gitlab",
        "issuer": GITLAB_ISSUER,
        "crates": ("octo-lib",),
        "repository": "octo-group/sub/octo-lib",
        "workflow": ".gitlab-ci.yml",
    }
    fields.update(overrides)
    if isinstance(fields.get("refs"), list):
        fields["refs"] = tuple(RefPattern.compile(r) for r in fields["refs"])
    return Policy(**fields)


def job_rule(repository: str, workflow: str, ref: str | None = None) -> JobWorkflowRule:
    pattern = RefPattern.compile(ref, allow_sha=True) if ref is not None else None
    return JobWorkflowRule(repository, workflow, pattern)


def verified(issuer: Issuer, claims: dict[str, Any]) -> VerifiedClaims:
    return VerifiedClaims(
        issuer=issuer,
        jti=str(claims.get("jti", "jti-1")),
        issued_at=int(claims.get("iat", 0)),
        expires_at=int(claims.get("exp", 0)),
        claims=claims,
    )


ALL_OPERATIONS = frozenset(Operation)
