"""GitLab CI: reading its claims, its field rules, and namespace id pinning.

Stages, in order: namespace id, CI config source, workflow (CI config path),
environment, refs. The namespace id is GitLab's defence against resurrection: a policy
may write it (``namespace_id``); otherwise the id seen on the first successful match is
pinned for (issuer, project path) and every later token must carry the same one.

The CI config source binds the pipeline definition to the project itself: GitLab lets a
project take its ``.gitlab-ci.yml`` from another project, and then whoever controls that
other project decides what the job runs, whatever its own repository holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from trustpub.errors import InvalidJWT
from trustpub.grants import Provenance
from trustpub.oidc.issuers import Issuer
from trustpub.policies.model import Policy
from trustpub.providers.base import (
    ENVIRONMENT_STAGE,
    NONE_SHOWN,
    REFS_STAGE,
    CiConfigRef,
    ClaimSource,
    FieldCheck,
    ProviderRules,
    Stage,
    TokenFacts,
    backticked,
    config_prefix,
    numeric_list,
    optional_nonempty,
)
from trustpub.text import fold, same_folded, shown

_DIGITS = re.compile(r"[0-9]+")
# ASCII only (GitLab paths are): see the note on lower-casing in github.py.
_PROJECT_PATH = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+", re.ASCII)
# host or host:port (an IPv6 literal in brackets), ASCII for the same reason.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?", re.ASCII)

UNPINNED_SHOWN = "(any; pinned on first use)"


def namespace_pin_key(issuer_url: str, project_path: str) -> str:
    """The pin's key: issuer URL and lower-cased project path.

    ``|`` cannot occur in a project path, so the key is unambiguous read from the right.
    """
    return f"{issuer_url}|{fold(project_path)}"


class InMemoryNamespacePins:
    """A ``NamespacePins`` held in a dict: for tests and ``trustpub policy explain``."""

    def __init__(self, pins: dict[str, str] | None = None) -> None:
        self.pins: dict[str, str] = dict(pins or {})

    async def get_namespace_pin(self, key: str) -> str | None:
        return self.pins.get(key)

    async def pin_namespace(self, key: str, namespace_id: str) -> str:
        # Set-if-absent: the first id recorded wins, as the protocol requires.
        return self.pins.setdefault(key, namespace_id)


def parse_ci_config_ref(value: str) -> CiConfigRef | None:
    """Split ``HOST/GROUP/PROJECT//PATH@REF``: the host is everything before the first
    ``/``, the project what follows it up to the first ``//``, the path what follows
    that up to the last ``@``. None when the value has another shape, or a host or
    project that is not plain ASCII (lower-casing anything else could fold it onto
    another name, as the Kelvin sign folds onto ``k``)."""
    slash = value.find("/")
    start = value.find("//")
    end = value.rfind("@")
    if slash <= 0 or start <= slash or end <= start + 2:
        return None
    host, project = value[:slash], value[slash + 1 : start]
    if not _HOST.fullmatch(host) or not _PROJECT_PATH.fullmatch(project):
        return None
    return CiConfigRef(
        host=host, project=project, path=value[start + 2 : end], ref=value[end + 1 :]
    )


def parse_ci_config_path(value: str) -> str | None:
    """The config file path in ``host/group/project//PATH@REF``: after the first ``//``,
    up to the last ``@``. None when the value has another shape."""
    parsed = parse_ci_config_ref(value)
    return parsed.path if parsed is not None else None


def issuer_host(issuer_url: str) -> str:
    """The issuer URL's host[:port], as GitLab writes its instance in ``ci_config_ref_uri``.

    ``Issuer`` refuses credentials in the URL, so the netloc is exactly host[:port]. A
    default port written out (``https://host:443``) is dropped: GitLab writes the host
    alone then.
    """
    parts = urlsplit(issuer_url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if parts.port is not None and parts.port == default:
        return parts.hostname or ""
    return parts.netloc


def read_facts(source: ClaimSource, issuer: Issuer) -> TokenFacts:
    """Read and type-check the claims GitLab matching uses; malformed -> InvalidJWT."""
    project_path = source.required_str("project_path")
    if not _PROJECT_PATH.fullmatch(project_path):
        raise InvalidJWT("Unexpected `project_path` value")
    namespace_id = source.required_str("namespace_id")
    if not _DIGITS.fullmatch(namespace_id):
        raise InvalidJWT("Unexpected `namespace_id` value")
    config_uri = source.required_str("ci_config_ref_uri")
    ci_config = parse_ci_config_ref(config_uri)
    if ci_config is None:
        raise InvalidJWT("Unexpected `ci_config_ref_uri` value")
    environment = optional_nonempty(source, "environment")
    if environment is not None and not environment.isascii():
        # GitLab environment names are ASCII (letters, digits, spaces, `-_/${}.`): a
        # token carrying anything else was not made by GitLab for a real environment.
        raise InvalidJWT(
            f"Unexpected `environment` value `{shown(environment)}`: GitLab environment "
            "names are ASCII"
        )
    ref_path = optional_nonempty(source, "ref_path")
    event = optional_nonempty(source, "pipeline_source")
    provenance = Provenance(
        issuer=issuer.url,
        provider="gitlab",
        repository=project_path,
        repository_id=optional_nonempty(source, "project_id"),
        owner_id=namespace_id,
        workflow_ref=config_uri,
        ref=ref_path,
        sha=optional_nonempty(source, "sha"),
        run_id=optional_nonempty(source, "pipeline_id"),
        job_id=optional_nonempty(source, "job_id"),
        environment=environment,
        event=event,
    )
    return TokenFacts(
        provider="gitlab",
        repository=project_path,
        owner_id=namespace_id,
        workflow=ci_config.path,
        environment=environment,
        ref=ref_path,
        event=event,
        job_workflow=None,
        job_workflow_ref=None,
        provenance=provenance,
        ci_config=ci_config,
    )


def refused_event(facts: TokenFacts) -> str | None:
    return None


def expected_namespace(policy: Policy, pin: str | None) -> str | None:
    """The id a policy requires: written in it, else the pinned one, else none yet."""
    return policy.namespace_id if policy.namespace_id is not None else pin


def check_namespace_id(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    expected = expected_namespace(policy, pin)
    if expected is None:
        # Nothing to compare yet; matching pins this token's id once it succeeds.
        return FieldCheck("namespace_id", UNPINNED_SHOWN, facts.owner_id, True)
    return FieldCheck("namespace_id", expected, facts.owner_id, expected == facts.owner_id)


def namespace_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    expected = numeric_list(e for p in policies if (e := expected_namespace(p, pin)) is not None)
    return (
        f"{config_prefix(facts)} does not match the namespace ID ({facts.owner_id}) in the "
        f"JWT. Expected namespace IDs: {expected}. Please check the trust policy's "
        "`namespace_id` (or the recorded pin) if the namespace really changed."
    )


def _config_source(facts: TokenFacts) -> tuple[str, str]:
    """(expected, got) as ``host/project``: the token's issuer and project, and where the
    token says the CI configuration comes from."""
    expected = f"{issuer_host(facts.provenance.issuer)}/{facts.repository}"
    config = facts.ci_config
    # read_facts always sets it for GitLab; were it missing, "(none)" never matches.
    got = f"{config.host}/{config.project}" if config is not None else NONE_SHOWN
    return expected, got


def check_ci_config_source(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    # The config must come from the project itself, on the issuer's own instance. GitLab
    # lets a project run a configuration kept in ANOTHER project (`ci_config_path` =
    # `file.yml@other/project`); the job then runs whatever that project's maintainers
    # write, yet its token carries this project's identity. Matching the path alone
    # would let them publish under a policy written for this project's own file.
    # Case-insensitive: GitLab paths and host names are.
    expected, got = _config_source(facts)
    return FieldCheck("ci_config_ref_uri", expected, got, same_folded(got, expected))


def ci_config_source_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    config = facts.ci_config
    host = issuer_host(facts.provenance.issuer)
    if config is not None and not same_folded(config.host, host):
        return (
            f"{config_prefix(facts)} requires the CI configuration to come from the "
            f"issuer's instance `{host}`, but the JWT's `ci_config_ref_uri` names the host "
            f"`{config.host}`"
        )
    named = config.project if config is not None else NONE_SHOWN
    return (
        f"{config_prefix(facts)} requires the CI configuration to come from the project "
        f"itself, but the JWT's `ci_config_ref_uri` names `{named}`"
    )


def check_workflow(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    return FieldCheck(
        "workflow", policy.workflow, facts.workflow, policy.workflow == facts.workflow
    )


def workflow_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    return (
        f"{config_prefix(facts)} does not match the workflow filepath `{facts.workflow}` in "
        f"the JWT. Expected workflow filepaths: {backticked(p.workflow for p in policies)}"
    )


RULES = ProviderRules(
    kind="gitlab",
    read_facts=read_facts,
    refused_event=refused_event,
    stages=(
        Stage("namespace_id", check_namespace_id, namespace_refusal),
        Stage("ci_config_ref_uri", check_ci_config_source, ci_config_source_refusal),
        Stage("workflow", check_workflow, workflow_refusal),
        ENVIRONMENT_STAGE,
        REFS_STAGE,
    ),
)
