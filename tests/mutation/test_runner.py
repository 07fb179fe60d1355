"""The mutation runner itself: stable mutant names, the operators, the code swap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.mutation.runner import (
    EQUIVALENT_FILE,
    ROOT,
    TARGETS,
    apply,
    load_equivalents,
    mutants_of,
)
from trustpub.policies import RefPattern
from trustpub.policies.patterns import RefPattern as PatternClass

SOURCE = '''
import re

_ID = re.compile("[0-9]+")


def check(value: str, parts: list[str]) -> str:
    """Docstrings are not mutated."""
    if len(parts) != 3 or not parts[0]:
        raise ValueError("bad")
    if not _ID.fullmatch(value) or value.startswith("0"):
        raise ValueError("bad id")
    return value[1:] if any(parts) else value


class Box:
    def open(self, n: int) -> bool:
        n += 1
        return n <= 2 and True
'''


def described(source: str) -> dict[str, str]:
    return {m.key: m.what for m in mutants_of("sample", source)}


def test_every_operator_applies_where_it_should() -> None:
    mutants = described(SOURCE)
    expected = {
        "sample:check:compare:1": "len(parts) != 3 -> len(parts) == 3",
        "sample:check:clause:1": (
            "len(parts) != 3 -> False (in `len(parts) != 3 or not parts[0]`)"
        ),
        "sample:check:raise:1": "raise ValueError('bad') -> pass",
        "sample:check:method:1": "_ID.fullmatch(value) -> _ID.match(value)",
        "sample:check:method:2": "_ID.fullmatch(value) -> _ID.search(value)",
        "sample:check:method:3": "value.startswith('0') -> value.endswith('0')",
        "sample:check:method:4": "any(parts) -> all(parts)",
        "sample:check:not:1": "not parts[0] -> parts[0]",
        "sample:check:number:1": "3 -> 4 (in `len(parts) != 3`)",
        "sample:Box.open:arith:1": "n += 1 -> n -= 1",
        "sample:Box.open:boundary:1": "n <= 2 -> n < 2 (in `n <= 2 and True`)",
        "sample:Box.open:constant:1": "True -> False (in `n <= 2 and True`)",
        "sample:Box.open:boolop:1": "n <= 2 and True -> n <= 2 or True",
    }
    assert {key: mutants.get(key) for key in expected} == expected
    assert not [what for what in mutants.values() if "Docstrings" in what]
    # Module-level code is not mutated.
    assert not [key for key in mutants if key.split(":")[1] not in ("check", "Box.open")]


def test_names_do_not_depend_on_line_numbers_or_other_functions() -> None:
    moved = SOURCE.replace(
        "import re\n", "import re\n\n\ndef added(x: int) -> bool:\n    return x == 1 and not x\n\n"
    )
    before, after = described(SOURCE), described(moved)
    assert {k: v for k, v in after.items() if not k.startswith("sample:added:")} == before


def test_applied_mutant_reaches_every_reference_to_the_function() -> None:
    # RefPattern was imported by name before the mutant was applied: the swap of the
    # code object still reaches it, as it reaches the tests' imports in a worker.
    (mutant,) = [
        m
        for m in mutants_of("trustpub.policies.patterns")
        if m.function == "RefPattern.matches" and m.what.endswith(".match(ref)")
    ]
    original = PatternClass.matches.__code__
    pattern = RefPattern.compile("refs/heads/main")
    try:
        apply(mutant)
        assert pattern.matches("refs/heads/main2")
    finally:
        PatternClass.matches.__code__ = original
    assert not pattern.matches("refs/heads/main2")


def test_equivalent_list_is_well_formed_and_names_security_core_modules() -> None:
    entries = load_equivalents()
    assert entries, f"{EQUIVALENT_FILE} lists no equivalent mutant"
    for key, entry in entries.items():
        module, function, kind, ordinal = key.split(":")
        assert module in TARGETS
        assert function
        assert kind
        assert int(ordinal) >= 1
        assert " -> " in entry.what


@pytest.mark.slow
def test_a_small_module_runs_end_to_end_with_every_mutant_killed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.mutation.runner", "trustpub.oidc.claims"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()[-1]
    assert " 0 survived" in summary
    assert "100.0 % of the non-equivalent mutants killed" in summary
