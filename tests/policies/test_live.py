"""LivePolicies and the last good set kept on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustpub.config import Settings
from trustpub.errors import PolicyLoadError
from trustpub.policies import load_policies
from trustpub.policies.live import LivePolicies, policy_snapshot

GOOD = """
[[policy]]
name = "release"
provider = "github"
crates = ["octo-lib"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
"""
BROKEN = '[[policy]]\nname = "x"\n'


def live(tmp_path: Path) -> LivePolicies:
    settings = Settings(policy_dir=tmp_path / "policies", data_dir=tmp_path / "data")
    return LivePolicies(
        settings.policy_dir,
        lambda: load_policies(settings.policy_dir, settings.issuers),
        snapshot=policy_snapshot(settings.data_dir, settings.policy_dir, settings.issuers),
    )


def test_a_broken_directory_with_no_good_set_ever_seen_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.toml").write_text(BROKEN)
    with pytest.raises(PolicyLoadError):
        live(tmp_path)


def test_a_start_on_a_broken_directory_uses_the_last_good_set(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.toml").write_text(GOOD)
    first = live(tmp_path)
    (policies / "p.toml").write_text(BROKEN)
    again = live(tmp_path)
    assert len(again.current) == 1
    assert again.current.fingerprint == first.current.fingerprint
    assert again.last_error is not None
    assert "p.toml" in again.last_error


def test_a_reload_that_fails_keeps_the_snapshot_and_a_good_one_replaces_it(
    tmp_path: Path,
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.toml").write_text(GOOD)
    running = live(tmp_path)
    (policies / "p.toml").write_text(BROKEN)
    assert running.reload() is False
    (policies / "p.toml").write_text(GOOD + GOOD.replace('"release"', '"second"'))
    assert running.reload() is True
    (policies / "p.toml").write_text(BROKEN)
    assert len(live(tmp_path).current) == 2  # the newer good set, not the first


def test_a_snapshot_of_another_policy_directory_is_never_used(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.toml").write_text(GOOD)
    live(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "p.toml").write_text(BROKEN)
    settings = Settings(policy_dir=other, data_dir=tmp_path / "data")
    with pytest.raises(PolicyLoadError):
        LivePolicies(
            other,
            lambda: load_policies(other, settings.issuers),
            snapshot=policy_snapshot(settings.data_dir, settings.policy_dir, settings.issuers),
        )


def test_the_snapshot_is_owner_only(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.toml").write_text(GOOD)
    live(tmp_path)
    root = tmp_path / "data" / "policies-last-good"
    assert root.stat().st_mode & 0o777 == 0o700
    copies = [p for p in root.iterdir() if p.is_dir()]
    assert len(copies) == 1
    assert (copies[0] / "p.toml").stat().st_mode & 0o777 == 0o600
