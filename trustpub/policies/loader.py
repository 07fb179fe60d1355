"""Strict loading of policy files: every problem in every file is reported, then refused.

The loader reads the ``*.toml`` files directly inside one directory (not its
subdirectories, so ``policies/examples/`` is documentation, never configuration). A
single problem anywhere refuses the whole directory: a half-loaded policy set could
silently drop a restriction an owner relied on, so nothing is used until all is valid.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from trustpub.durations import parse_duration
from trustpub.errors import PolicyLoadError, PolicyProblem
from trustpub.grants import Operation
from trustpub.logins import is_login, unique_logins
from trustpub.oidc.issuers import (
    CANONICAL_ISSUERS,
    DEFAULT_ISSUERS,
    PROVIDER_KINDS,
    Issuer,
    ProviderKind,
)
from trustpub.policies.model import DEFAULT_TOKEN_TTL, JobWorkflowRule, Policy
from trustpub.policies.patterns import PatternError, RefPattern
from trustpub.policies.policyset import PolicySet
from trustpub.text import fold

DEFAULT_POLICY_DIR = "policies"

_COMMON_KEYS = frozenset(
    {
        "name",
        "provider",
        "issuer",
        "crates",
        "workflow",
        "environment",
        "refs",
        "operations",
        "token_ttl",
        "owners",
    }
)
_PROVIDER_KEYS: dict[ProviderKind, frozenset[str]] = {
    "github": frozenset({"repository", "repository_owner_id", "job_workflow"}),
    "gitlab": frozenset({"project_path", "namespace_id"}),
}
_JOB_WORKFLOW_KEYS = frozenset({"repository", "workflow", "ref"})

_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# cargo's rule for a new crate name: ASCII letters, digits, `-` and `_`, starting with
# a letter, at most 64 characters.
_CRATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_NAME_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_DIGITS = re.compile(r"[0-9]+")
# GitLab's own rule for environment names: ASCII letters, digits, spaces, `-_/${}.`.
_GITLAB_ENVIRONMENT = re.compile(r"[A-Za-z0-9 _/${}.-]+")


def load_policies(
    directory: str | os.PathLike[str] = DEFAULT_POLICY_DIR,
    issuers: Sequence[Issuer] = DEFAULT_ISSUERS,
) -> PolicySet:
    """Load every ``*.toml`` file directly in ``directory``.

    Raises ``PolicyLoadError`` listing every problem in every file. An existing
    directory without policy files loads as an empty set, which matches nothing.
    """
    root = Path(directory)
    if not root.is_dir():
        raise PolicyLoadError(
            [PolicyProblem(str(root), None, None, "not a directory (expected policy files)")]
        )
    paths = sorted(p for p in root.glob("*.toml") if p.is_file())
    problems: list[PolicyProblem] = []
    policies: list[Policy] = []
    digest = hashlib.sha256()
    for path in paths:
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(PolicyProblem(path.name, None, None, "not valid UTF-8"))
            continue
        found, file_problems = parse_policy_file(path.name, text, issuers)
        policies.extend(found)
        problems.extend(file_problems)
    if problems:
        raise PolicyLoadError(problems)
    return PolicySet(policies, files=tuple(p.name for p in paths), fingerprint=digest.hexdigest())


def parse_policy_file(
    file: str, text: str, issuers: Sequence[Issuer] = DEFAULT_ISSUERS
) -> tuple[list[Policy], list[PolicyProblem]]:
    """Parse one file's text; return its valid policies and all its problems."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [PolicyProblem(file, None, None, f"invalid TOML: {exc}")]
    except RecursionError:
        # tomllib recurses on nesting; no policy nests more than three levels.
        return [], [PolicyProblem(file, None, None, "invalid TOML: nested too deeply")]
    problems: list[PolicyProblem] = []
    for key in sorted(set(document) - {"policy"}):
        problems.append(
            PolicyProblem(file, None, key, "unknown top-level key (expected [[policy]] tables)")
        )
    tables = document.get("policy", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(
            PolicyProblem(file, None, "policy", "expected [[policy]] tables (an array of tables)")
        )
        return [], problems
    policies: list[Policy] = []
    seen: set[str] = set()
    for position, table in enumerate(tables, start=1):
        policy, table_problems = read_policy_table(file, f"#{position}", table, issuers)
        problems.extend(table_problems)
        if policy is None:
            continue
        if policy.name in seen:
            problems.append(
                PolicyProblem(file, policy.name, "name", "duplicate policy name in this file")
            )
            continue
        seen.add(policy.name)
        policies.append(policy)
    return policies, problems


def read_policy_table(
    file: str, label: str, table: Mapping[str, object], issuers: Sequence[Issuer]
) -> tuple[Policy | None, list[PolicyProblem]]:
    """Validate one policy given as a table (a ``[[policy]]`` table, or an owner config
    converted by ``trustpub.registry.configs``): the policy, or None and every problem.

    The one validation of every policy field, whatever the policy's source: owner
    configs are checked by exactly the rules policy files are.
    """
    problems: list[PolicyProblem] = []
    policy = _PolicyReader(file, label, table, problems).read(issuers)
    return (None if problems else policy), problems


def _kind(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


class _PolicyReader:
    """Reads one ``[[policy]]`` table, recording each problem instead of stopping."""

    def __init__(
        self,
        file: str,
        label: str,
        table: Mapping[str, object],
        problems: list[PolicyProblem],
    ) -> None:
        self.file = file
        self.label = label
        self.table = table
        self.problems = problems
        self.failed = False

    def problem(self, field: str | None, message: str) -> None:
        self.failed = True
        self.problems.append(PolicyProblem(self.file, self.label, field, message))

    # -- typed getters -----------------------------------------------------------------

    def string(
        self, key: str, *, required: bool, table: Mapping[str, object] | None = None
    ) -> str | None:
        source = self.table if table is None else table
        field = key if table is None else f"job_workflow.{key}"
        if key not in source:
            if required:
                self.problem(field, "required")
            return None
        value = source[key]
        if not isinstance(value, str):
            self.problem(field, f"expected a string, got {_kind(value)}")
            return None
        if not value:
            self.problem(field, "must not be empty")
            return None
        if value != value.strip():
            self.problem(field, "must not start or end with whitespace")
            return None
        return value

    def string_list(self, key: str) -> list[str] | None:
        if key not in self.table:
            return None
        value = self.table[key]
        if not isinstance(value, list):
            self.problem(key, f"expected an array of strings, got {_kind(value)}")
            return None
        if not value:
            self.problem(key, "must not be empty (omit the key instead)")
            return None
        result: list[str] = []
        for item in value:
            if not isinstance(item, str):
                self.problem(key, f"expected an array of strings, found {_kind(item)}")
                return None
            if not item or item != item.strip():
                self.problem(key, f'"{item}": must be non-empty, without surrounding whitespace')
                return None
            result.append(item)
        return result

    # -- the policy --------------------------------------------------------------------

    def read(self, issuers: Sequence[Issuer]) -> Policy | None:
        name = self.string("name", required=True)
        if name is not None:
            if _POLICY_NAME.fullmatch(name):
                self.label = name
            else:
                self.problem(
                    "name",
                    f'"{name}": use letters, digits, ".", "_" and "-" (at most 64, '
                    "starting with a letter or digit)",
                )
        provider = self._provider()
        self._unknown_keys(provider)
        issuer = self._issuer(provider, issuers)
        crates = self._crates()
        operations = self._operations()
        ttl = self._ttl()
        owners = self._owners(operations)
        refs = self._refs("refs", self.table.get("refs"), allow_sha=False, list_expected=True)
        environment = self._environment(provider, self.string("environment", required=False))

        repository = workflow = owner_id = namespace_id = None
        job_workflow: JobWorkflowRule | None = None
        if provider == "github":
            repository = self._github_repository(
                "repository", self.string("repository", required=True)
            )
            owner_id = self._digits("repository_owner_id", required=True)
            workflow = self._github_workflow("workflow", self.string("workflow", required=True))
            job_workflow = self._job_workflow()
        elif provider == "gitlab":
            repository = self._project_path(self.string("project_path", required=True))
            namespace_id = self._digits("namespace_id", required=False)
            workflow = self._gitlab_workflow(self.string("workflow", required=True))

        if (
            self.failed
            or name is None
            or provider is None
            or issuer is None
            or crates is None
            or repository is None
            or workflow is None
            or ttl is None
            or operations is None
            or refs is None
        ):
            return None
        return Policy(
            file=self.file,
            name=name,
            provider=provider,
            issuer=issuer,
            crates=tuple(crates),
            repository=repository,
            workflow=workflow,
            environment=environment,
            refs=refs,
            operations=operations,
            token_ttl=ttl,
            owners=tuple(owners or ()),
            repository_owner_id=owner_id,
            namespace_id=namespace_id,
            job_workflow=job_workflow,
        )

    def _provider(self) -> ProviderKind | None:
        value = self.string("provider", required=True)
        if value is None:
            return None
        for kind in PROVIDER_KINDS:
            if value == kind:
                return kind
        self.problem("provider", f'"{value}": expected one of: {", ".join(PROVIDER_KINDS)}')
        return None

    def _unknown_keys(self, provider: ProviderKind | None) -> None:
        allowed = set(_COMMON_KEYS)
        if provider is None:
            for keys in _PROVIDER_KEYS.values():
                allowed |= keys
        else:
            allowed |= _PROVIDER_KEYS[provider]
        for key in sorted(set(self.table) - allowed):
            hint = ""
            for other, keys in _PROVIDER_KEYS.items():
                if key in keys and other != provider:
                    hint = f" (only {other} policies have it)"
            self.problem(key, f"unknown key{hint}")

    def _issuer(self, provider: ProviderKind | None, issuers: Sequence[Issuer]) -> str | None:
        written = self.string("issuer", required=False)
        if provider is None:
            return None
        url = written if written is not None else CANONICAL_ISSUERS[provider]
        configured = {i.url: i for i in issuers}
        choices = ", ".join(i.url for i in issuers if i.provider == provider) or "none"
        issuer = configured.get(url)
        if issuer is None:
            if written is None:
                self.problem(
                    "issuer",
                    f"the canonical {provider} issuer {url} is not configured on this "
                    f"server; name one of the configured {provider} issuers: {choices}",
                )
            else:
                self.problem(
                    "issuer",
                    f"{url} is not a configured issuer (configured {provider} issuers: {choices})",
                )
            return None
        # Each policy binds to exactly one issuer of its own kind: a GitLab instance
        # must never be able to satisfy a GitHub policy, whatever claims it signs.
        if issuer.provider != provider:
            self.problem(
                "issuer",
                f"{url} is a {issuer.provider} issuer, but this policy's provider is {provider}",
            )
            return None
        return url

    def _crates(self) -> list[str] | None:
        if "crates" not in self.table:
            self.problem("crates", "required")
            return None
        crates = self.string_list("crates")
        if crates is None:
            return None
        seen: set[str] = set()
        for crate in crates:
            if not _CRATE_NAME.fullmatch(crate):
                self.problem(
                    "crates",
                    f'"{crate}": not a valid crate name (ASCII letters, digits, "-" and '
                    '"_", starting with a letter, at most 64 characters)',
                )
                return None
            # Registries treat names equal up to case and `-`/`_` as the same crate.
            canonical = fold(crate).replace("-", "_")
            if canonical in seen:
                self.problem("crates", f'"{crate}": listed twice')
                return None
            seen.add(canonical)
        return crates

    def _operations(self) -> frozenset[Operation] | None:
        values = self.string_list("operations")
        if values is None:
            return None if "operations" in self.table else frozenset({Operation.PUBLISH_UPDATE})
        known = {op.value: op for op in Operation}
        result: set[Operation] = set()
        for value in values:
            op = known.get(value)
            if op is None:
                self.problem(
                    "operations",
                    f'"{value}": unknown operation (expected: {", ".join(known)})',
                )
                return None
            if op in result:
                self.problem("operations", f'"{value}": listed twice')
                return None
            result.add(op)
        return frozenset(result)

    def _ttl(self) -> int | None:
        if "token_ttl" not in self.table:
            return DEFAULT_TOKEN_TTL
        try:
            return parse_duration(self.table["token_ttl"])
        except ValueError as exc:
            self.problem("token_ttl", str(exc))
            return None

    def _owners(self, operations: frozenset[Operation] | None) -> list[str] | None:
        owners = self.string_list("owners")
        if owners is None:
            return None
        for login in owners:
            if not is_login(login):
                self.problem("owners", f'"{login}": not a valid registry login')
                return None
        if len(unique_logins(owners)) != len(owners):
            self.problem("owners", "a login is listed twice")
            return None
        if operations is not None and Operation.PUBLISH_NEW not in operations:
            self.problem(
                "owners",
                'owners apply only to crates created through "publish-new"; add it to '
                "operations or remove owners",
            )
            return None
        return owners

    def _refs(
        self, field: str, value: object, *, allow_sha: bool, list_expected: bool
    ) -> tuple[RefPattern, ...] | None:
        if value is None:
            return ()
        items: Iterable[object]
        if list_expected:
            listed = self.string_list(field)
            if listed is None:
                return None
            items = listed
        else:
            items = [value]
        patterns: list[RefPattern] = []
        for item in items:
            if not isinstance(item, str):
                self.problem(field, f"expected a string, got {_kind(item)}")
                return None
            try:
                patterns.append(RefPattern.compile(item, allow_sha=allow_sha))
            except PatternError as exc:
                self.problem(field, f'"{item}": {exc}')
                return None
        return tuple(patterns)

    def _digits(self, key: str, *, required: bool) -> str | None:
        value = self.table.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            self.problem(key, f'write the id as a string: {key} = "{value}"')
            return None
        text = self.string(key, required=required)
        if text is not None and not _DIGITS.fullmatch(text):
            self.problem(key, f'"{text}": expected a numeric id (digits only)')
            return None
        return text

    def _environment(self, provider: ProviderKind | None, value: str | None) -> str | None:
        # Compared to the token's `environment` with ASCII letters folded and every other
        # character exact (trustpub.text); GitLab cannot produce non-ASCII names at all,
        # so such a GitLab policy could never match and is refused here.
        if value is None:
            return None
        if not value.isprintable():
            self.problem("environment", f"{value!r}: contains unprintable characters")
            return None
        if provider == "gitlab" and not _GITLAB_ENVIRONMENT.fullmatch(value):
            self.problem(
                "environment",
                f'"{value}": GitLab environment names use ASCII letters, digits, spaces and '
                "`-`, `_`, `/`, `$`, `{`, `}`, `.`",
            )
            return None
        return value

    def _github_repository(self, field: str, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split("/")
        # Exactly owner/name with plain characters: no wildcards, no extra segments, so
        # a policy can never cover more repositories than the one it names.
        if len(parts) != 2 or not all(
            _NAME_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts
        ):
            self.problem(field, f'"{value}": expected exactly "owner/name"')
            return None
        return value

    def _github_workflow(self, field: str, value: str | None) -> str | None:
        if value is None:
            return None
        if "/" in value or "\\" in value:
            self.problem(
                field,
                f'"{value}": expected the file name only (like "release.yml"), not a path; '
                "GitHub workflows live in .github/workflows/",
            )
            return None
        if not value.endswith((".yml", ".yaml")):
            self.problem(field, f'"{value}": a workflow file name ends with .yml or .yaml')
            return None
        if not value.isprintable():
            self.problem(field, f"{value!r}: contains unprintable characters")
            return None
        return value

    def _project_path(self, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split("/")
        if len(parts) < 2 or not all(
            _NAME_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts
        ):
            self.problem(
                "project_path",
                f'"{value}": expected "namespace/project" (subgroups allowed: "group/sub/project")',
            )
            return None
        return value

    def _gitlab_workflow(self, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
            self.problem(
                "workflow",
                f'"{value}": expected a relative path in the project like ".gitlab-ci.yml" '
                'or "ci/release.yml" (no leading "/", no "." or ".." segments)',
            )
            return None
        if "\\" in value or any(c.isspace() for c in value) or not value.isprintable():
            self.problem("workflow", f"{value!r}: contains spaces or unusual characters")
            return None
        return value

    def _job_workflow(self) -> JobWorkflowRule | None:
        if "job_workflow" not in self.table:
            return None
        table = self.table["job_workflow"]
        if not isinstance(table, dict):
            self.problem("job_workflow", f"expected a table, got {_kind(table)}")
            return None
        for key in sorted(set(table) - _JOB_WORKFLOW_KEYS):
            self.problem(f"job_workflow.{key}", "unknown key")
        repository = self._github_repository(
            "job_workflow.repository", self.string("repository", required=True, table=table)
        )
        workflow = self._github_workflow(
            "job_workflow.workflow", self.string("workflow", required=True, table=table)
        )
        ref_text = self.string("ref", required=False, table=table)
        refs = self._refs("job_workflow.ref", ref_text, allow_sha=True, list_expected=False)
        if repository is None or workflow is None or refs is None:
            return None
        return JobWorkflowRule(repository, workflow, refs[0] if refs else None)
