"""The running service's policies: reloaded on SIGHUP and when files change.

A broken file never replaces the last good set: the error is logged, counted, and
reported until a good set loads again. The last good set is also kept on disk
(``PolicySnapshot``, under the data directory), so that a worker process started while a
file is broken, by a supervisor replacing a dead one or by a restart of the service,
starts on it instead of refusing to start. Only when no good set was ever seen does a
broken directory stop start-up.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from trustpub.errors import PolicyLoadError
from trustpub.policies.policyset import PolicySet

if TYPE_CHECKING:
    from trustpub.oidc.issuers import Issuer

log = logging.getLogger("trustpub.policies")

Signature = tuple[tuple[str, int, int], ...]


def directory_signature(directory: Path) -> Signature:
    """Name, modification time and size of each policy file: what a reload watches."""
    entries = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name.endswith(".toml") and entry.is_file():
                    st = entry.stat()
                    entries.append((entry.name, st.st_mtime_ns, st.st_size))
    except OSError:
        return ()
    return tuple(sorted(entries))


class PolicySnapshot:
    """The files of the last good policy set, copied to ``root/<fingerprint>/``.

    ``root/current`` (replaced atomically) names the copy in force and the policy
    directory it came from: a snapshot of another directory is never used. A copy is
    loaded again before it is named current, and must give the same fingerprint, so a
    file edited while being copied cannot slip into the snapshot.
    """

    KEEP = 2  # the current copy and the one before (a worker may be reading it)

    def __init__(self, root: Path, policy_dir: Path, load_dir: Callable[[Path], PolicySet]) -> None:
        self.root = root
        self.policy_dir = str(policy_dir.resolve())
        self._load_dir = load_dir

    def _current(self) -> str | None:
        try:
            data = json.loads((self.root / "current").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("policy_dir") != self.policy_dir:
            return None
        fingerprint = data.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint.isalnum():
            return None
        return fingerprint

    def save(self, policies: PolicySet, source: Path) -> bool:
        """Copy ``policies``' files from ``source``; False (and logged) when that fails."""
        if not policies.fingerprint or self._current() == policies.fingerprint:
            return False
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            target = self.root / policies.fingerprint
            if not target.is_dir():
                staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".staging-"))
                for name in policies.files:
                    shutil.copyfile(source / name, staging / name)
                    os.chmod(staging / name, 0o600)
                try:
                    staging.rename(target)
                except OSError:  # another worker made the same copy first
                    shutil.rmtree(staging, ignore_errors=True)
            if self._load_dir(target).fingerprint != policies.fingerprint:
                shutil.rmtree(target, ignore_errors=True)
                return False  # edited while copied: the next reload copies it again
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".current-")
            with os.fdopen(fd, "w") as fh:
                json.dump({"policy_dir": self.policy_dir, "fingerprint": policies.fingerprint}, fh)
            os.replace(tmp, self.root / "current")
            self._prune(policies.fingerprint)
        except (OSError, PolicyLoadError) as exc:
            log.warning(
                "cannot save the last good policy set",
                extra={"fields": {"reason": getattr(exc, "strerror", None) or str(exc)}},
            )
            return False
        return True

    def _prune(self, keep: str) -> None:
        copies = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and p.name != keep),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in copies[self.KEEP - 1 :]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self) -> PolicySet | None:
        """The last good set, or None when there is none (for this policy directory)."""
        fingerprint = self._current()
        if fingerprint is None:
            return None
        try:
            return self._load_dir(self.root / fingerprint)
        except PolicyLoadError:  # e.g. the issuers changed since: not a good set now
            return None


def policy_snapshot(data_dir: Path, policy_dir: Path, issuers: Sequence[Issuer]) -> PolicySnapshot:
    """Where the service keeps its last good policy set: ``data_dir/policies-last-good``."""
    from trustpub.policies import load_policies

    return PolicySnapshot(
        data_dir / "policies-last-good",
        policy_dir,
        lambda directory: load_policies(directory, issuers),
    )


def load_or_last_good(
    load: Callable[[], PolicySet], snapshot: PolicySnapshot | None
) -> tuple[PolicySet, PolicyLoadError | None]:
    """The policy directory's set, or the last good one with the reason it was not
    loaded. Raises ``PolicyLoadError`` when the directory is broken and no good set was
    ever seen."""
    try:
        return load(), None
    except PolicyLoadError as exc:
        last_good = snapshot.load() if snapshot is not None else None
        if last_good is None:
            raise
        return last_good, exc


class LivePolicies:
    def __init__(
        self,
        directory: Path,
        load: Callable[[], PolicySet],
        on_reload: Callable[[str], None] = lambda result: None,
        snapshot: PolicySnapshot | None = None,
    ) -> None:
        self.directory = directory
        self._load = load
        self._on_reload = on_reload
        self._snapshot = snapshot
        self._signature = directory_signature(directory)
        # A broken directory with no good set ever seen raises: the service must not
        # start on broken policies. With one, it starts on it and says why.
        self.current, error = load_or_last_good(load, snapshot)
        self.last_error: str | None = None
        if error is not None:
            self._failed(error, "policy files are broken; starting on the last good set")
        else:
            self._save()

    def __call__(self) -> PolicySet:
        return self.current

    def _failed(self, exc: PolicyLoadError, message: str) -> None:
        self.last_error = exc.detail
        log.error(message, extra={"fields": {"problems": [str(p) for p in exc.problems]}})

    def _save(self) -> None:
        if self._snapshot is not None:  # its failures are logged, and never stop a reload
            self._snapshot.save(self.current, self.directory)

    def reload(self) -> bool:
        """Load the directory again; keep the last good set when that fails."""
        self._signature = directory_signature(self.directory)
        try:
            loaded = self._load()
        except PolicyLoadError as exc:
            self._failed(exc, "policy reload failed; keeping the last good set")
            self._on_reload("error")
            return False
        self.current = loaded
        self.last_error = None
        log.info("policies loaded", extra={"fields": {"policies": len(loaded)}})
        self._save()
        self._on_reload("ok")
        return True

    def changed(self) -> bool:
        return directory_signature(self.directory) != self._signature

    async def watch(self, interval: float) -> None:
        """Poll the directory every ``interval`` seconds and reload on change."""
        while True:
            await anyio.sleep(interval)
            if self.changed():
                self.reload()
