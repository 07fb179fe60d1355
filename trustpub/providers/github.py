"""GitHub Actions: reading its claims and its field rules.

Stages, in order: repository owner id, workflow file name, environment, refs, job
workflow. Owner and repository compare case-insensitively (GitHub names do), the
workflow file name case-sensitively, the environment case-insensitively.

``parse_workflow_ref`` finds the file name with ``str.rfind`` rather than a loop over
the characters (it ran twice per exchange, ~2 % of its CPU); the tests check it against
the loop it replaced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from trustpub.errors import InvalidJWT
from trustpub.grants import Provenance
from trustpub.oidc.issuers import Issuer
from trustpub.policies.model import Policy
from trustpub.providers.base import (
    ANY_SHOWN,
    ENVIRONMENT_STAGE,
    NONE_SHOWN,
    REFS_STAGE,
    ClaimSource,
    FieldCheck,
    ProviderRules,
    Stage,
    TokenFacts,
    WorkflowRef,
    backticked,
    config_prefix,
    numeric_list,
    optional_nonempty,
)
from trustpub.text import same_folded

# These triggers run with the base repository's identity on behalf of code or events an
# outsider controls (a fork's pull request, another workflow's artifacts); a token minted
# there could publish what the maintainers never reviewed. crates.io and PyPI refuse them.
REFUSED_EVENTS = frozenset({"pull_request_target", "workflow_run"})

# ASCII only, like GitHub's own names: lower-casing a non-ASCII name could fold it onto
# an ASCII one (the Kelvin sign lower-cases to `k`) and reach another repository's policy.
_OWNER_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", re.ASCII)
_DIGITS = re.compile(r"[0-9]+")
# `OWNER/REPO/.github/workflows/`: neither name holds a `/`, so this is the string's first
# two `/`-separated parts, then the workflows folder exactly.
_WORKFLOWS_PREFIX = re.compile(r"([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/\.github/workflows/", re.ASCII)
_WORKFLOW_SUFFIXES = (".yml", ".yaml")


def parse_workflow_ref(value: str) -> WorkflowRef | None:
    """Split ``OWNER/REPO/.github/workflows/FILE@REF``; None when it has another shape.

    The file name is the last ``@``-separated prefix ending in ``.yml``/``.yaml`` before
    the ref's first ``/``: file names may contain ``@`` (``nested@evil.yml``) and refs
    may contain both ``@`` and ``.yml`` (``refs/heads/x@y.yml``), but a file name
    never contains ``/`` and the refs GitHub puts here (``refs/...``) always do.
    """
    prefix = _WORKFLOWS_PREFIX.match(value)
    if prefix is None:
        return None
    rest = value[prefix.end() :]
    # The last `@` before the first `/` whose prefix names a YAML file, found from the
    # right with str.rfind (no loop over the characters).
    head = rest.partition("/")[0]
    split_at = head.rfind("@")
    while split_at >= 0:
        head = head[:split_at]
        if head.endswith(_WORKFLOW_SUFFIXES):
            ref = rest[split_at + 1 :]
            return WorkflowRef(prefix.group(1), head, ref) if ref else None
        split_at = head.rfind("@")
    return None


def read_facts(source: ClaimSource, issuer: Issuer) -> TokenFacts:
    """Read and type-check the claims GitHub matching uses; malformed -> InvalidJWT."""
    repository = source.required_str("repository")
    if not _OWNER_NAME.fullmatch(repository):
        raise InvalidJWT("Unexpected `repository` value")
    owner_id = source.required_str("repository_owner_id")
    if not _DIGITS.fullmatch(owner_id):
        raise InvalidJWT("Unexpected `repository_owner_id` value")
    workflow_ref = source.required_str("workflow_ref")
    parsed = parse_workflow_ref(workflow_ref)
    if parsed is None:
        raise InvalidJWT("Unexpected `workflow_ref` value")
    event = source.required_str("event_name")
    environment = optional_nonempty(source, "environment")
    ref = optional_nonempty(source, "ref")
    job_workflow_ref = optional_nonempty(source, "job_workflow_ref")
    if job_workflow_ref is not None and not all(
        part.isascii() for part in job_workflow_ref.split("/", 2)[:2]
    ):
        # GitHub owner and repository names are ASCII: a reusable workflow repository
        # spelt with the Kelvin sign is a forgery, not a near match.
        raise InvalidJWT(
            "Unexpected `job_workflow_ref` value: GitHub owner and repository names are ASCII"
        )
    # An unparseable job_workflow_ref is kept as None: it only matters to a policy that
    # requires a job workflow, and such a policy then refuses it.
    if job_workflow_ref == workflow_ref:
        # A workflow that is not reusable is its own job workflow: parsed once.
        job_workflow: WorkflowRef | None = parsed
    else:
        job_workflow = parse_workflow_ref(job_workflow_ref) if job_workflow_ref else None
    provenance = Provenance(
        issuer=issuer.url,
        provider="github",
        repository=repository,
        repository_id=optional_nonempty(source, "repository_id"),
        owner_id=owner_id,
        workflow_ref=workflow_ref,
        job_workflow_ref=job_workflow_ref,
        ref=ref,
        sha=optional_nonempty(source, "sha"),
        run_id=optional_nonempty(source, "run_id"),
        run_attempt=optional_nonempty(source, "run_attempt"),
        environment=environment,
        event=event,
    )
    return TokenFacts(
        provider="github",
        repository=repository,
        owner_id=owner_id,
        workflow=parsed.filename,
        environment=environment,
        ref=ref,
        event=event,
        job_workflow=job_workflow,
        job_workflow_ref=job_workflow_ref,
        provenance=provenance,
    )


def refused_event(facts: TokenFacts) -> str | None:
    if facts.event in REFUSED_EVENTS:
        return (
            f"Trusted Publishing does not support the `{facts.event}` event trigger due to "
            "security concerns. Please use a different trigger such as `push`, `release`, "
            "or `workflow_dispatch`."
        )
    return None


def check_owner_id(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    # The owner id never moves to another account: if the owner is deleted and its
    # name re-registered ("resurrection"), the name matches but the id does not.
    expected = policy.repository_owner_id or NONE_SHOWN
    ok = policy.repository_owner_id is not None and policy.repository_owner_id == facts.owner_id
    return FieldCheck("repository_owner_id", expected, facts.owner_id, ok)


def owner_id_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    expected = numeric_list(p.repository_owner_id or "" for p in policies)
    return (
        f"{config_prefix(facts)} does not match the repository owner ID ({facts.owner_id}) "
        f"in the JWT. Expected owner IDs: {expected}. Please update `repository_owner_id` "
        "in the trust policy if the repository really moved to a new owner."
    )


def check_workflow(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    # Case-sensitive: GitHub file names are, and `Release.yml` is another file.
    return FieldCheck(
        "workflow", policy.workflow, facts.workflow, policy.workflow == facts.workflow
    )


def workflow_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    return (
        f"{config_prefix(facts)} does not match the workflow filename `{facts.workflow}` in "
        f"the JWT. Expected workflow filenames: {backticked(p.workflow for p in policies)}"
    )


def check_job_workflow(policy: Policy, facts: TokenFacts, pin: str | None) -> FieldCheck:
    got = facts.job_workflow_ref or NONE_SHOWN
    rule = policy.job_workflow
    if rule is None:
        return FieldCheck("job_workflow", ANY_SHOWN, got, True)
    job = facts.job_workflow
    ok = (
        job is not None
        and same_folded(job.repository, rule.repository)
        and job.filename == rule.workflow
        and (rule.ref is None or rule.ref.matches(job.ref))
    )
    return FieldCheck("job_workflow", rule.describe(), got, ok)


def job_workflow_refusal(facts: TokenFacts, policies: Sequence[Policy], pin: str | None) -> str:
    expected = backticked(p.job_workflow.describe() for p in policies if p.job_workflow)
    if facts.job_workflow_ref is None:
        return (
            f"{config_prefix(facts)} requires a job workflow, but the JWT does not specify "
            f"one. Expected job workflows: {expected}"
        )
    return (
        f"{config_prefix(facts)} does not match the job workflow `{facts.job_workflow_ref}` "
        f"in the JWT. Expected job workflows: {expected}"
    )


RULES = ProviderRules(
    kind="github",
    read_facts=read_facts,
    refused_event=refused_event,
    stages=(
        Stage("repository_owner_id", check_owner_id, owner_id_refusal),
        Stage("workflow", check_workflow, workflow_refusal),
        ENVIRONMENT_STAGE,
        REFS_STAGE,
        Stage("job_workflow", check_job_workflow, job_workflow_refusal),
    ),
)
