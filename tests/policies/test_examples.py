"""Every example in policies/README.md and policies/examples/ loads as documented."""

import re
import shutil
from pathlib import Path

import pytest

from trustpub.oidc.issuers import DEFAULT_ISSUERS, Issuer
from trustpub.policies import load_policies, parse_policy_file

POLICIES = Path(__file__).resolve().parents[2] / "policies"
ISSUERS = (*DEFAULT_ISSUERS, Issuer("https://ghe.example.com/_services/token", "github"))


def readme_examples() -> list[str]:
    text = (POLICIES / "README.md").read_text()
    return re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)


def test_readme_has_the_documented_examples() -> None:
    names = [name for block in readme_examples() for name in re.findall(r'name = "(.*)"', block)]
    assert len(names) >= 6
    assert {"octo-lib", "octo-workspace", "tags-only", "gitlab-release"} <= set(names)


@pytest.mark.parametrize("block", readme_examples())
def test_every_readme_example_loads(block: str) -> None:
    policies, problems = parse_policy_file("README.md", block, ISSUERS)
    assert problems == []
    assert len(policies) == 1


@pytest.mark.parametrize("path", sorted((POLICIES / "examples").glob("*.toml")), ids=str)
def test_every_example_file_loads(path: Path, tmp_path: Path) -> None:
    shutil.copy(path, tmp_path / path.name)
    assert len(load_policies(tmp_path, ISSUERS)) >= 1


def test_examples_are_not_loaded_from_the_policy_directory() -> None:
    loaded = load_policies(POLICIES, ISSUERS)
    assert not any(policy.file.startswith("examples") for policy in loaded)
