"""What bench/sqlite_store.py and bench/postgresql_store.py share: a store class as a
git revision defined it (to measure before and after in one run), a key helper, and a
closed loop of concurrent callers that reports CPU and wall time."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def class_at(rev: str, path: str, name: str) -> Any:
    """The class ``name`` as defined by the file ``path`` (from the repository's root) at
    git revision ``rev``, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"{Path(path).stem}_at_{rev}")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)  # noqa: S102
    return getattr(module, name)


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


async def closed_loop(
    concurrency: int, ops: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """Run ``call(i)`` for i in range(ops) from ``concurrency`` tasks; (CPU s, wall s)."""
    counter = iter(range(ops))

    async def worker() -> None:
        for i in counter:
            await call(i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall
