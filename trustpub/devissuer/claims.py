"""Realistic default claim sets for GitHub- and GitLab-shaped development tokens.

A claim set is built in three steps: the provider's defaults, then the caller's
overrides, then the claims that real issuers derive from others (``sub``,
``repository_owner``, ``workflow_ref``, ``ci_config_ref_uri`` ...) are recomputed from
the overridden values, unless the caller overrode them too. So
``repository="me/crate"`` alone yields a consistent token, and a test that wants an
inconsistent one says so explicitly.

An override whose value is ``None`` removes the claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from trustpub.oidc.issuers import ProviderKind

DEFAULT_LIFETIME = 300

# Values shaped like a real release job (see REFERENCE.md sections 1 and 2). Every id and
# flag is a JSON string on GitHub, as the real issuer sends them; GitLab's runner_id is a
# number.
_GITHUB_BASE: dict[str, Any] = {
    "actor": "octocat",
    "actor_id": "583231",
    "base_ref": "",
    "event_name": "push",
    "head_ref": "",
    "job_workflow_sha": "8c13a5f0d1c8a9e6b1f2c3d4e5f60718293a4b5c",
    "ref": "refs/tags/v0.1.0",
    "ref_protected": "true",
    "repository": "octo-org/octo-lib",
    "repository_id": "632596897",
    "repository_owner_id": "131804563",
    "repository_visibility": "public",
    "run_attempt": "1",
    "run_id": "21561244697",
    "run_number": "306",
    "runner_environment": "github-hosted",
    "sha": "8c13a5f0d1c8a9e6b1f2c3d4e5f60718293a4b5c",
    "workflow": "Release",
    "workflow_sha": "8c13a5f0d1c8a9e6b1f2c3d4e5f60718293a4b5c",
}

_GITLAB_BASE: dict[str, Any] = {
    "ci_config_sha": "8c13a5f0d1c8a9e6b1f2c3d4e5f60718293a4b5c",
    "deployment_tier": "production",
    "environment": "release",
    "environment_protected": "true",
    "job_id": "9876543210",
    "namespace_id": "4242",
    "pipeline_id": "123456",
    "pipeline_source": "push",
    "project_id": "777",
    "project_path": "octo-group/octo-lib",
    "ref": "v0.1.0",
    "ref_protected": "true",
    "ref_type": "tag",
    "runner_environment": "gitlab-hosted",
    "runner_id": 12345,
    "sha": "8c13a5f0d1c8a9e6b1f2c3d4e5f60718293a4b5c",
    "user_id": "31",
    "user_login": "octocat",
}

GITHUB_WORKFLOW_FILE = "release.yml"
GITLAB_CONFIG_FILE = ".gitlab-ci.yml"


def build_claims(
    provider: ProviderKind,
    *,
    issuer: str,
    audience: str,
    now: int,
    lifetime: int = DEFAULT_LIFETIME,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete claim set: defaults, then ``overrides``, then consistent derived claims.

    ``iat``/``nbf``/``exp`` come from ``now`` and ``lifetime`` and ``jti`` is fresh on
    every call; all of them can still be overridden (for expired or replayed tokens).
    """
    given = dict(overrides or {})
    if provider == "github":
        claims = dict(_GITHUB_BASE)
        # GitHub backdates nbf by five minutes.
        timing = {"iat": now, "nbf": now - 300, "exp": now + lifetime}
    elif provider == "gitlab":
        claims = dict(_GITLAB_BASE)
        timing = {"iat": now, "nbf": now - 5, "exp": now + lifetime}
    else:
        raise ValueError(f"unknown provider {provider!r} (expected github or gitlab)")
    claims.update(timing)
    claims.update({"iss": issuer, "aud": audience, "jti": str(uuid.uuid4())})
    claims.update(given)
    derived = _github_derived(claims) if provider == "github" else _gitlab_derived(claims, issuer)
    for name, value in derived.items():
        if name not in given:
            claims[name] = value
    return {k: v for k, v in claims.items() if v is not None}


def _github_derived(claims: Mapping[str, Any]) -> dict[str, Any]:
    repository = str(claims.get("repository", ""))
    ref = str(claims.get("ref", ""))
    workflow_ref = f"{repository}/.github/workflows/{GITHUB_WORKFLOW_FILE}@{ref}"
    derived: dict[str, Any] = {
        "repository_owner": repository.partition("/")[0],
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
        "workflow_ref": workflow_ref,
        # A plain (non-reusable) workflow: the job's workflow is the top-level one.
        "job_workflow_ref": claims.get("workflow_ref", workflow_ref),
    }
    environment = claims.get("environment")
    if environment:
        derived["sub"] = f"repo:{repository}:environment:{environment}"
    else:
        derived["sub"] = f"repo:{repository}:ref:{ref}"
    return derived


def _gitlab_derived(claims: Mapping[str, Any], issuer: str) -> dict[str, Any]:
    project_path = str(claims.get("project_path", ""))
    ref = str(claims.get("ref", ""))
    ref_type = str(claims.get("ref_type", "branch"))
    ref_path = f"refs/tags/{ref}" if ref_type == "tag" else f"refs/heads/{ref}"
    # `iss` may be overridden with anything, even a non-URL: derive from the real one then.
    iss = claims.get("iss")
    try:
        host = urlsplit(iss if isinstance(iss, str) and iss else issuer).netloc
    except ValueError:
        host = urlsplit(issuer).netloc
    return {
        # Subgroups: the namespace is everything before the LAST slash.
        "namespace_path": project_path.rpartition("/")[0],
        "ref_path": ref_path,
        "ci_config_ref_uri": f"{host}/{project_path}//{GITLAB_CONFIG_FILE}@{ref_path}",
        "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
    }
