"""The running service's policies: reloaded on SIGHUP and when files change.

A broken file never replaces the last good set: the error is logged, counted, and
reported by ``/readyz`` until a good set loads again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import anyio

from trustpub.errors import PolicyLoadError
from trustpub.policies.policyset import PolicySet

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


class LivePolicies:
    def __init__(
        self,
        directory: Path,
        load: Callable[[], PolicySet],
        on_reload: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.directory = directory
        self._load = load
        self._on_reload = on_reload
        self._signature = directory_signature(directory)
        # The first load raises: a service must not start on broken policies.
        self.current: PolicySet = load()
        self.last_error: str | None = None

    def __call__(self) -> PolicySet:
        return self.current

    def reload(self) -> bool:
        """Load the directory again; keep the last good set when that fails."""
        self._signature = directory_signature(self.directory)
        try:
            loaded = self._load()
        except PolicyLoadError as exc:
            self.last_error = exc.detail
            log.error(
                "policy reload failed; keeping the last good set",
                extra={"fields": {"problems": [str(p) for p in exc.problems]}},
            )
            self._on_reload("error")
            return False
        self.current = loaded
        self.last_error = None
        log.info("policies loaded", extra={"fields": {"policies": len(loaded)}})
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
