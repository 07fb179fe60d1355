"""README.md's "Quick start", run as written, in three "terminals".

Marker convention. Inside the ``## Quick start`` section, every fenced ``sh`` block
follows an HTML comment (invisible on GitHub) that says how this test runs it:

    <!-- quickstart: run -->             in the first terminal: one bash session that
                                         every ``run`` block shares, in order, so ``cd``
                                         and ``export`` carry over; must succeed
                                         (``set -eo pipefail``)
    <!-- quickstart: fails -->           in that session, in a subshell; must fail
    <!-- quickstart: background URL -->  in a terminal of its own, in the background;
                                         ready once URL answers 200; stopped with SIGTERM
                                         at the end
    <!-- quickstart: skip REASON -->     not run

A block without a marker fails this test, so nothing added later goes untested by
accident. A marker's URL may use ``${NAME:-default}``, expanded like the shell would.

Every terminal starts where the README says to start, the clone's root: here a
directory holding only ``.venv``, a link to the virtual environment running this test.
HOME and CARGO_HOME are private to the test (so ``~/trustpub-quickstart`` is under its
temporary directory), and QS_PORT / QS_ISSUER_PORT, which the README reads with
defaults, are free ports. Nothing reaches the network: no proxy variables, crates.io is
replaced by a source that does not exist, and the crate has no dependencies.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

needs_tools = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("bash", "cargo", "curl")),
    reason="needs bash, cargo and curl",
)

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Quick start"
MARKER = re.compile(r"<!-- quickstart: (run|fails|background|skip)\b ?(.*?) ?-->")
BLOCK_TIMEOUT = 120.0
READY_TIMEOUT = 30.0
DONE = "__quickstart_block_done__"


@dataclass(frozen=True)
class Block:
    kind: str  # run, fails, background or skip
    argument: str  # the background block's readiness URL, or skip's reason
    script: str
    line: int  # in README.md, for messages


def quickstart_blocks(text: str) -> list[Block]:
    """Every ``sh`` block of the Quick start section, with its marker."""
    start = text.index(f"\n{SECTION}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    first_line = text[:start].count("\n") + 2
    lines = section.split("\n")[1:]
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```sh"):
            where = first_line + i
            marker = next((MARKER.fullmatch(s) for s in reversed(lines[:i]) if s.strip()), None)
            if marker is None:
                pytest.fail(f"README.md:{where}: sh block without a quickstart marker")
            close = lines.index("```", i + 1)
            script = "\n".join(lines[i + 1 : close]) + "\n"
            blocks.append(Block(marker.group(1), marker.group(2), script, where))
            i = close
        i += 1
    return blocks


def expand(value: str, env: dict[str, str]) -> str:
    """``${NAME:-default}`` and ``${NAME}`` as the shell expands them."""

    def one(match: re.Match[str]) -> str:
        return env.get(match.group(1)) or (match.group(3) or "")

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", one, value)


def test_the_marker_convention_covers_every_block() -> None:
    blocks = quickstart_blocks(README.read_text())
    kinds = [b.kind for b in blocks]
    assert kinds.count("background") == 2  # the dev issuer and trustpub
    assert "run" in kinds
    assert "fails" in kinds
    assert all(b.argument.startswith("http://") for b in blocks if b.kind == "background")
    assert expand("a${X:-1}b${Y:-2}c${Z}", {"X": "9", "Z": "z"}) == "a9b2cz"


def test_the_quick_starts_own_variables_cannot_pass_for_trustpub_configuration() -> None:
    """Its port variables are QS_*: a TRUSTPUB_* name would look like a setting that
    trustpub reads, and a newcomer would expect exporting it to move the service."""
    start = README.read_text().index(f"\n{SECTION}\n")
    section = README.read_text()[start:]
    section = section[: section.find("\n## ", 1)]
    names = set(re.findall(r"\$\{(\w+)", section)) | set(re.findall(r"`(\w+_PORT)`", section))
    assert names == {"QS_PORT", "QS_ISSUER_PORT"}


def test_a_block_without_a_marker_is_an_error() -> None:
    text = "# x\n\n## Quick start\n\n<!-- quickstart: run -->\n```sh\ntrue\n```\n\n```sh\nls\n```\n"
    with pytest.raises(pytest.fail.Exception, match=r"README.md:10: sh block without"):
        quickstart_blocks(text)
    assert [b.script for b in quickstart_blocks(text.rsplit("```sh", 1)[0])] == ["true\n"]


class Shell:
    """The first terminal: one bash session fed block after block."""

    def __init__(self, cwd: Path, env: dict[str, str], blocks_dir: Path) -> None:
        self.blocks_dir = blocks_dir
        self.transcript: list[str] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, block: Block, number: int) -> tuple[int, str]:
        """Run ``block``; its exit status and output. Blocks read no input (/dev/null)."""
        path = self.blocks_dir / f"block{number}.sh"
        path.write_text(block.script)
        if block.kind == "run":
            # As typed in a terminal, so cd and export stay; a failure ends the session.
            command = f"set -eo pipefail; . '{path}' </dev/null; set +eo pipefail; status=0"
        else:
            command = f"(set -eo pipefail; . '{path}') </dev/null; status=$?"
        # On a line of its own even when the block's output does not end with one.
        command += f"; printf '\\n{DONE} %s\\n' $status"
        assert self.process.stdin is not None
        self.transcript.append(f"$ # README.md:{block.line} ({block.kind})\n")
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"README.md:{block.line}: still running after {BLOCK_TIMEOUT} s")
            if line is None:  # the session ended: a command failed under set -e
                self.transcript.extend(output)
                return self.process.wait(), "".join(output)
            if line.startswith(DONE):
                self.transcript.extend(output)
                return int(line.split()[1]), "".join(output).removesuffix("\n")
            output.append(line)

    def close(self) -> None:
        stop_group(self.process)
        self.reader.join(timeout=5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def stop_group(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group (bash and what it started); wait until it is
    gone; SIGKILL what is left after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class Background:
    block: Block
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def background(
    block: Block, number: int, cwd: Path, env: dict[str, str], logs: Path
) -> Iterator[Background]:
    """A terminal of its own for ``block``, stopped on exit."""
    log = logs / f"background{number}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", block.script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Background(block, process, log)
    finally:
        stop_group(process)


def wait_ready(running: Background, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(
                f"README.md:{running.block.line}: exited ({running.process.returncode}):\n"
                + running.log.read_text(errors="replace")
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(
        f"README.md:{running.block.line}: {url} not ready after {READY_TIMEOUT} s:\n"
        + running.log.read_text(errors="replace")
    )


def terminal_environment(tmp_path: Path) -> dict[str, str]:
    """What a fresh terminal has, minus anything that could reach or configure the
    network, trustpub or cargo from outside the test."""
    dropped = ("TRUSTPUB_", "CARGO_", "ACTIONS_", "RUSTUP_TOOLCHAIN", "VIRTUAL_ENV")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(dropped) and not k.lower().endswith("_proxy")
    }
    home = tmp_path / "home"
    cargo_home = tmp_path / "cargo-home"
    home.mkdir()
    cargo_home.mkdir()
    # Any attempt to use crates.io fails at once instead of going out.
    (cargo_home / "config.toml").write_text(
        '[source.crates-io]\nreplace-with = "nowhere"\n'
        f'[source.nowhere]\ndirectory = "{tmp_path / "no-crates-io"}"\n'
        "[net]\nretry = 0\n"
    )
    if "RUSTUP_HOME" not in env and (Path.home() / ".rustup").is_dir():
        # rustup's cargo finds its toolchains under the real HOME, not the test's.
        env["RUSTUP_HOME"] = str(Path.home() / ".rustup")
    env.update(
        {
            "HOME": str(home),
            "CARGO_HOME": str(cargo_home),
            "CARGO_TERM_COLOR": "never",
            "CARGO_HTTP_TIMEOUT": "20",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "QS_PORT": str(free_port()),
            "QS_ISSUER_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.mark.slow
@needs_tools
def test_the_quick_start_publishes_with_a_trusted_publishing_token(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("needs to run from a virtual environment (the README activates .venv)")
    blocks = quickstart_blocks(README.read_text())
    env = terminal_environment(tmp_path)
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(venv)
    logs = tmp_path / "logs"
    logs.mkdir()
    base = f"http://127.0.0.1:{env['QS_PORT']}"

    shell = Shell(clone, env, logs)
    failures: list[str] = []
    try:
        with contextlib.ExitStack() as terminals:
            for number, block in enumerate(blocks):
                if block.kind == "skip":
                    continue
                if block.kind == "background":
                    running = terminals.enter_context(background(block, number, clone, env, logs))
                    wait_ready(running, expand(block.argument, env))
                    continue
                status, output = shell.run(block, number)
                if block.kind == "run" and status != 0:
                    pytest.fail(
                        f"README.md:{block.line}: exit status {status}:\n"
                        + "".join(shell.transcript)
                    )
                if block.kind == "fails":
                    if status == 0:
                        failures.append(f"README.md:{block.line}: succeeded:\n{output}")
                    # Refused by the policy, not for a key or a typo.
                    elif "does not match the ref `refs/heads/main`" not in output:
                        failures.append(f"README.md:{block.line}: wrong refusal:\n{output}")

            # While the service still runs: both versions are in the sparse index, the
            # second one published through Trusted Publishing.
            index = httpx.get(f"{base}/index/he/ll/hello-trustpub", trust_env=False)
            assert index.status_code == 200, index.text
            listed = [json.loads(line)["vers"] for line in index.text.splitlines()]
            assert listed == ["0.1.0", "0.2.0"]
            versions = {
                v: httpx.get(f"{base}/api/v1/crates/hello-trustpub/{v}", trust_env=False).json()
                for v in ("0.1.0", "0.2.0")
            }
            assert versions["0.1.0"]["version"]["trustpub_data"] is None
            provenance = versions["0.2.0"]["version"]["trustpub_data"]
            assert provenance["repository"] == "octo-org/octo-lib"
            assert provenance["issuer"] == f"http://127.0.0.1:{env['QS_ISSUER_PORT']}"
            assert provenance["policies"] == ["hello.toml#release"]
    finally:
        shell.close()

    transcript = "".join(shell.transcript)
    assert not failures, "\n".join(failures)
    assert "Published hello-trustpub v0.1.0 at registry `trustpub`" in transcript
    assert "Published hello-trustpub v0.2.0 at registry `trustpub`" in transcript
    # Neither token shows up in the output: both went straight into the variable.
    assert not re.search(r"(trustpub|tpreg)_[0-9A-Za-z]{20}", transcript)
    # The state stayed in the test's HOME, and cargo only ever knew our registry.
    assert (Path(env["HOME"]) / "trustpub-quickstart" / "data" / "trustpub.db").is_file()
    indexes = Path(env["CARGO_HOME"]) / "registry" / "index"
    assert [p.name for p in indexes.iterdir() if "crates.io" in p.name] == []
