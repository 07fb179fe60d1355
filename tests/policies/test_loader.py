from pathlib import Path

import pytest

from trustpub.durations import parse_duration as parse_ttl
from trustpub.errors import PolicyLoadError
from trustpub.grants import Operation
from trustpub.oidc.issuers import GITHUB_ISSUER, GITLAB_ISSUER, Issuer
from trustpub.policies import DEFAULT_TOKEN_TTL, load_policies, parse_policy_file

GHES_URL = "https://ghe.example.com/_services/token"
ISSUERS = (
    Issuer(GITHUB_ISSUER, "github"),
    Issuer(GITLAB_ISSUER, "gitlab"),
    Issuer(GHES_URL, "github"),
)

FULL = """
[[policy]]
name = "octo-lib-release"
provider = "github"
issuer = "https://token.actions.githubusercontent.com"
crates = ["octo-lib", "octo-lib-macros"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
environment = "release"
refs = ["refs/tags/v*"]
operations = ["publish-update", "yank"]
token_ttl = "45m"
[policy.job_workflow]
repository = "octo-org/shared"
workflow = "publish.yml"
ref = "refs/tags/v*"

[[policy]]
name = "gitlab"
provider = "gitlab"
crates = ["octo-lib"]
project_path = "octo-group/sub/octo-lib"
namespace_id = "4242"
workflow = "ci/release.yml"
"""

GITHUB_MIN = """
[[policy]]
name = "p"
provider = "github"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
"""

GITLAB_MIN = """
[[policy]]
name = "p"
provider = "gitlab"
crates = ["octo-lib"]
project_path = "octo-group/octo-lib"
workflow = ".gitlab-ci.yml"
"""


def test_full_file_loads_every_field() -> None:
    policies, problems = parse_policy_file("a.toml", FULL, ISSUERS)
    assert problems == []
    github, gitlab = policies
    assert github.id == "a.toml#octo-lib-release"
    assert github.crates == ("octo-lib", "octo-lib-macros")
    assert github.key == (GITHUB_ISSUER, "octo-org/octo-lib")
    assert github.environment == "release"
    assert [r.text for r in github.refs] == ["refs/tags/v*"]
    assert github.operations == {Operation.PUBLISH_UPDATE, Operation.YANK}
    assert github.token_ttl == 45 * 60
    assert github.job_workflow is not None
    assert github.job_workflow.repository == "octo-org/shared"
    assert github.job_workflow.workflow == "publish.yml"
    assert str(github.job_workflow.ref) == "refs/tags/v*"
    assert gitlab.issuer == GITLAB_ISSUER
    assert gitlab.repository == "octo-group/sub/octo-lib"
    assert gitlab.namespace_id == "4242"
    assert gitlab.workflow == "ci/release.yml"


def test_defaults_when_optional_fields_are_absent() -> None:
    (policy,), problems = parse_policy_file("a.toml", GITHUB_MIN, ISSUERS)
    assert problems == []
    assert policy.issuer == GITHUB_ISSUER
    assert policy.operations == {Operation.PUBLISH_UPDATE}
    assert policy.token_ttl == DEFAULT_TOKEN_TTL
    assert policy.environment is None
    assert policy.refs == ()
    assert policy.job_workflow is None
    assert policy.owners == ()


def test_owners_with_publish_new_load() -> None:
    text = (
        GITHUB_MIN + 'operations = ["publish-new", "publish-update"]\nowners = ["alice", "bob"]\n'
    )
    (policy,), problems = parse_policy_file("a.toml", text, ISSUERS)
    assert problems == []
    assert policy.owners == ("alice", "bob")


def test_policy_for_a_custom_issuer() -> None:
    text = GITHUB_MIN + f'issuer = "{GHES_URL}"\n'
    (policy,), problems = parse_policy_file("a.toml", text, ISSUERS)
    assert problems == []
    assert policy.issuer == GHES_URL


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (60, 60),
        ("90s", 90),
        ("45m", 2700),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h1m1s", 3661),
        ("90d", 90 * 86400),
    ],
)
def test_ttl_forms(value: object, seconds: int) -> None:
    assert parse_ttl(value) == seconds


@pytest.mark.parametrize(
    "value", [0, -5, "0m", "", "45", "m", "1w", "45 m", "1h1d", True, 1.5, [1]]
)
def test_bad_ttls_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"expected|longer than zero"):
        parse_ttl(value)


def _replace(base: str, old: str, new: str) -> str:
    assert old in base
    return base.replace(old, new)


GH = GITHUB_MIN
GL = GITLAB_MIN

BAD_FILES = [
    # (id, text, field, message fragment)
    ("unknown key", GH + 'colour = "red"\n', "colour", "unknown key"),
    ("gitlab key in github", GH + 'namespace_id = "1"\n', "namespace_id", "only gitlab"),
    ("github key in gitlab", GL + 'repository = "a/b"\n', "repository", "only github"),
    ("unknown top-level", "x = 1\n" + GH, "x", "unknown top-level"),
    ("policy not array", '[policy]\nname = "p"\n', "policy", "array of tables"),
    (
        "wrong type",
        _replace(GH, 'workflow = "release.yml"', "workflow = 3"),
        "workflow",
        "got an integer",
    ),
    (
        "empty string",
        _replace(GH, 'workflow = "release.yml"', 'workflow = ""'),
        "workflow",
        "must not be empty",
    ),
    ("missing workflow", _replace(GH, 'workflow = "release.yml"\n', ""), "workflow", "required"),
    ("missing crates", _replace(GH, 'crates = ["octo-lib"]\n', ""), "crates", "required"),
    (
        "missing owner id",
        _replace(GH, 'repository_owner_id = "131804563"\n', ""),
        "repository_owner_id",
        "required",
    ),
    (
        "github workflow path",
        _replace(GH, '"release.yml"', '".github/workflows/release.yml"'),
        "workflow",
        "not a path",
    ),
    (
        "github workflow ext",
        _replace(GH, '"release.yml"', '"release"'),
        "workflow",
        ".yml or .yaml",
    ),
    (
        "gitlab workflow dotdot",
        _replace(GL, '".gitlab-ci.yml"', '"../ci.yml"'),
        "workflow",
        "relative path",
    ),
    (
        "gitlab workflow absolute",
        _replace(GL, '".gitlab-ci.yml"', '"/ci.yml"'),
        "workflow",
        "relative path",
    ),
    (
        "gitlab workflow empty segment",
        _replace(GL, '".gitlab-ci.yml"', '"ci//a.yml"'),
        "workflow",
        "relative path",
    ),
    ("whitespace name", _replace(GH, 'name = "p"', 'name = " p"'), "name", "whitespace"),
    ("whitespace environment", GH + 'environment = "prod "\n', "environment", "whitespace"),
    ("bad name", _replace(GH, 'name = "p"', 'name = "a b#c"'), "name", "letters, digits"),
    (
        "crate starts with digit",
        _replace(GH, '["octo-lib"]', '["1lib"]'),
        "crates",
        "not a valid crate name",
    ),
    (
        "crate bad char",
        _replace(GH, '["octo-lib"]', '["octo.lib"]'),
        "crates",
        "not a valid crate name",
    ),
    (
        "crate too long",
        _replace(GH, '["octo-lib"]', '["' + "a" * 65 + '"]'),
        "crates",
        "not a valid crate name",
    ),
    (
        "crate twice",
        _replace(GH, '["octo-lib"]', '["octo-lib", "Octo_Lib"]'),
        "crates",
        "listed twice",
    ),
    ("crates empty", _replace(GH, '["octo-lib"]', "[]"), "crates", "must not be empty"),
    ("crates not list", _replace(GH, '["octo-lib"]', '"octo-lib"'), "crates", "expected an array"),
    ("unknown operation", GH + 'operations = ["publish"]\n', "operations", "unknown operation"),
    ("operation twice", GH + 'operations = ["yank", "yank"]\n', "operations", "listed twice"),
    ("bad ref pattern", GH + 'refs = ["v*"]\n', "refs", "must start with `refs/`"),
    ("refs empty", GH + "refs = []\n", "refs", "must not be empty"),
    (
        "bad job ref",
        GH + '[policy.job_workflow]\nrepository = "a/b"\nworkflow = "x.yml"\nref = "main"\n',
        "job_workflow.ref",
        "refs/",
    ),
    (
        "job unknown key",
        GH + '[policy.job_workflow]\nrepository = "a/b"\nworkflow = "x.yml"\nsha = "1"\n',
        "job_workflow.sha",
        "unknown key",
    ),
    (
        "job missing workflow",
        GH + '[policy.job_workflow]\nrepository = "a/b"\n',
        "job_workflow.workflow",
        "required",
    ),
    (
        "job bad repository",
        GH + '[policy.job_workflow]\nrepository = "a"\nworkflow = "x.yml"\n',
        "job_workflow.repository",
        "owner/name",
    ),
    ("job not a table", GH + 'job_workflow = "a/b/x.yml"\n', "job_workflow", "expected a table"),
    (
        "owner id not digits",
        _replace(GH, '"131804563"', '"13180x"'),
        "repository_owner_id",
        "digits only",
    ),
    (
        "owner id integer",
        _replace(GH, '"131804563"', "131804563"),
        "repository_owner_id",
        "as a string",
    ),
    ("namespace id not digits", GL + 'namespace_id = "abc"\n', "namespace_id", "digits only"),
    (
        "repository one segment",
        _replace(GH, '"octo-org/octo-lib"', '"octo-lib"'),
        "repository",
        "owner/name",
    ),
    (
        "repository three segments",
        _replace(GH, '"octo-org/octo-lib"', '"a/b/c"'),
        "repository",
        "owner/name",
    ),
    (
        "repository wildcard",
        _replace(GH, '"octo-org/octo-lib"', '"octo-org/*"'),
        "repository",
        "owner/name",
    ),
    (
        "project path one segment",
        _replace(GL, '"octo-group/octo-lib"', '"octo-lib"'),
        "project_path",
        "namespace/project",
    ),
    ("unknown provider", _replace(GH, '"github"', '"bitbucket"'), "provider", "expected one of"),
    (
        "issuer not configured",
        GH + 'issuer = "https://evil.example"\n',
        "issuer",
        "not a configured issuer",
    ),
    ("issuer of other kind", GH + f'issuer = "{GITLAB_ISSUER}"\n', "issuer", "is a gitlab issuer"),
    ("owners without publish-new", GH + 'owners = ["alice"]\n', "owners", "publish-new"),
    (
        "owners bad login",
        GH + 'operations = ["publish-new"]\nowners = [" alice"]\n',
        "owners",
        "whitespace",
    ),
    (
        "owners invalid login",
        GH + 'operations = ["publish-new"]\nowners = ["al/ice"]\n',
        "owners",
        "not a valid registry login",
    ),
    ("bad ttl", GH + 'token_ttl = "forever"\n', "token_ttl", "duration"),
    ("zero ttl", GH + "token_ttl = 0\n", "token_ttl", "longer than zero"),
    ("duplicate names", GH + GH, "name", "duplicate policy name"),
]


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [pytest.param(t, f, m, id=i) for i, t, f, m in BAD_FILES],
)
def test_each_kind_of_problem_is_refused_with_its_field(
    text: str, field: str, fragment: str
) -> None:
    policies, problems = parse_policy_file("bad.toml", text, ISSUERS)
    assert problems, "expected a problem"
    assert any(p.field == field and fragment in p.message for p in problems), problems
    assert all(p.file == "bad.toml" for p in problems)
    if field not in ("name", "x"):
        # A policy with a problem is never part of the result.
        assert policies == []


def test_invalid_toml_is_reported_with_the_file() -> None:
    policies, problems = parse_policy_file("broken.toml", "[[policy]\nname = ", ISSUERS)
    assert policies == []
    assert len(problems) == 1
    assert problems[0].file == "broken.toml"
    assert "invalid TOML" in problems[0].message


def test_problem_names_the_policy() -> None:
    _, problems = parse_policy_file("a.toml", GH + 'colour = "red"\n', ISSUERS)
    assert str(problems[0]) == "a.toml: policy p: colour: unknown key"


def test_problem_of_unnamed_policy_names_its_position() -> None:
    _, problems = parse_policy_file("a.toml", _replace(GH, 'name = "p"\n', ""), ISSUERS)
    assert [(p.policy, p.field) for p in problems] == [("#1", "name")]


def test_canonical_issuer_must_be_configured() -> None:
    only_ghes = (Issuer(GHES_URL, "github"),)
    _, problems = parse_policy_file("a.toml", GH, only_ghes)
    assert [p.field for p in problems] == ["issuer"]
    assert "not configured on this server" in problems[0].message
    assert GHES_URL in problems[0].message


def test_all_problems_in_one_policy_are_reported() -> None:
    text = _replace(GH, 'workflow = "release.yml"', 'workflow = "a/b.yml"')
    text = _replace(text, '"131804563"', '"x"') + "colour = 1\n"
    _, problems = parse_policy_file("a.toml", text, ISSUERS)
    assert {p.field for p in problems} == {"workflow", "repository_owner_id", "colour"}


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text)


def test_directory_loads_every_toml_file_directly_inside(tmp_path: Path) -> None:
    _write(tmp_path, {"a.toml": GH, "b.toml": GL, "notes.txt": "ignored"})
    (tmp_path / "examples").mkdir()
    _write(tmp_path / "examples", {"broken.toml": "not toml ["})
    policy_set = load_policies(tmp_path, ISSUERS)
    assert len(policy_set) == 2
    assert policy_set.files == ("a.toml", "b.toml")
    assert [p.id for p in policy_set] == ["a.toml#p", "b.toml#p"]
    assert len(policy_set.fingerprint) == 64


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    _write(tmp_path, {"a.toml": GH})
    before = load_policies(tmp_path, ISSUERS).fingerprint
    assert load_policies(tmp_path, ISSUERS).fingerprint == before
    _write(tmp_path, {"a.toml": GH + 'environment = "prod"\n'})
    assert load_policies(tmp_path, ISSUERS).fingerprint != before


def test_problems_across_files_are_all_collected(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a.toml": GH + 'colour = "red"\n',
            "b.toml": "[[policy]\n",
            "c.toml": GL,
            "d.toml": b"\xff\xfe".decode("latin-1"),
        },
    )
    (tmp_path / "e.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyLoadError) as exc:
        load_policies(tmp_path, ISSUERS)
    files = [p.file for p in exc.value.problems]
    assert files == ["a.toml", "b.toml", "d.toml", "e.toml"]
    assert "not valid UTF-8" in exc.value.problems[-1].message


def test_missing_directory_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="not a directory"):
        load_policies(tmp_path / "nope", ISSUERS)


def test_empty_directory_loads_an_empty_set(tmp_path: Path) -> None:
    assert len(load_policies(tmp_path, ISSUERS)) == 0


def test_default_issuers_are_used_when_none_given(tmp_path: Path) -> None:
    _write(tmp_path, {"a.toml": GH + f'issuer = "{GHES_URL}"\n'})
    with pytest.raises(PolicyLoadError, match="not a configured issuer"):
        load_policies(tmp_path)
