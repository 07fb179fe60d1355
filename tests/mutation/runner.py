"""Mutation testing of the security core: would a test notice if this code were wrong?

``scripts/mutation`` runs this module. It changes one thing at a time in the modules that
decide what is accepted or refused (a comparison flipped, a ``raise`` removed, a clause of
a condition dropped, ``fullmatch`` turned into ``match``, a number nudged by one, ...),
runs that module's tests against the change, and reports every change no test noticed
(a *surviving* mutant). Survivors judged equivalent (they change nothing observable) are
listed in ``tests/mutation/equivalent.txt`` with the reason; every other survivor is a
missing test, and the run fails.

Why a small runner of our own and not a mutation tool:

- mutmut 3.8.1 was run over the same modules (2,457 mutants; 1,609 done after 15 minutes
  on this two-core machine, 245 survivors, nearly all rewritten error-message strings).
  Its operators have no ``fullmatch``->``match``, ``startswith``->``endswith``, removed
  ``raise``, removed validation call or dropped clause of a condition, which are exactly
  the mistakes that turn a refusal into an acceptance here, and it has no plug-in point
  for operators. It also skips decorated functions and properties.
- cosmic-ray 8 has no such operators either, starts a fresh interpreter and test run per
  mutant, and one session takes one test command, so each module would need its own
  session and configuration.

How it works: the module's source is parsed with ``ast``; each function (and method) is
walked in a fixed order and every place an operator applies is a mutant. A mutant is
named ``module:function:kind:ordinal`` (the ordinal counts that kind within that
function), so moving code or editing other functions does not rename it; the
equivalent list also records the mutated expression, so an entry whose name now points
at different code is reported stale instead of silently excusing a new mutant.

Running: each module gets one pytest session (in its own process) that collects that
module's tests once and runs them unmutated in a forked worker, timing each test. Then
it forks one worker per mutant (two at a time by default): the worker compiles the
mutated module and swaps the mutated code object into the live function
(``func.__code__``), so every reference to it, including names the tests imported, runs
the mutant; then it runs the tests fastest first and stops at the first failure. Forking
after collection keeps start-up, imports and collection out of the per-mutant cost. A
mutant gets five times the unmutated run (plus 10 s); one that loops forever is killed
and counts as caught. A mutant whose code cannot be swapped in (it drops ``super()``, so
its free variables differ) is reported as not applicable and not counted.

Not mutated: module-level and class-level statements (constants and compiled regexes
are exercised through the functions that use them), string literals (messages; the
tests pin the ones users rely on), and logging calls.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

_SUMMARY = "Mutation testing of the security core."
ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.txt")

# The security core and, for each module, the tests that are its own.
TARGETS: dict[str, tuple[str, ...]] = {
    "trustpub.policies.patterns": ("tests/policies/test_patterns.py",),
    "trustpub.oidc.jws": ("tests/oidc/test_jws.py", "tests/oidc/test_verify.py"),
    "trustpub.oidc.claims": ("tests/oidc/test_claims.py",),
    "trustpub.oidc.issuers": ("tests/oidc/test_issuers.py",),
    "trustpub.registry.actors": ("tests/registry/test_actors.py",),
    "trustpub.registry.auth": ("tests/registry/test_auth.py",),
    "trustpub.tokens.format": ("tests/tokens",),
    "trustpub.tokens.record": ("tests/tokens",),
    "trustpub.tokens.service": ("tests/tokens",),
    "trustpub.providers.base": ("tests/providers",),
    "trustpub.providers.github": ("tests/providers",),
    "trustpub.providers.gitlab": ("tests/providers",),
    "trustpub.providers.matching": ("tests/providers",),
    "trustpub.oidc.verify": ("tests/oidc/test_verify.py", "tests/oidc/test_lifetime.py"),
    "trustpub.oidc.keys": (
        "tests/oidc/test_keys.py",
        "tests/oidc/test_keys_refresh.py",
        "tests/oidc/test_local_issuer.py",
    ),
}


_LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical"})


@dataclass(frozen=True, slots=True)
class Mutant:
    module: str
    function: str
    kind: str
    ordinal: int
    what: str
    line: int

    @property
    def key(self) -> str:
        return f"{self.module}:{self.function}:{self.kind}:{self.ordinal}"


# -- operators ------------------------------------------------------------------------

_NEGATE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BOUNDARY: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
}
_METHODS: dict[str, tuple[str, ...]] = {
    "fullmatch": ("match", "search"),
    "match": ("search",),
    "startswith": ("endswith",),
    "endswith": ("startswith",),
    "removeprefix": ("removesuffix",),
    "removesuffix": ("removeprefix",),
    "hexdigest": ("upper",),
}
_FUNCTIONS: dict[str, str] = {"any": "all", "all": "any", "min": "max", "max": "min"}
_FOLDS = frozenset({"lower", "casefold", "upper", "strip", "rstrip", "lstrip"})


def _replacements(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """Every mutation of ``node`` itself, in a fixed order: (kind, replacement)."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for kind, table in (("compare", _NEGATE), ("boundary", _BOUNDARY)):
                new_op = table.get(type(op))
                if new_op is not None:
                    ops = list(node.ops)
                    ops[i] = new_op()
                    yield kind, ast.Compare(node.left, ops, node.comparators)
    elif isinstance(node, ast.BoolOp):
        other: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield "boolop", ast.BoolOp(other, node.values)
        # Drop one clause: `a or b or c` without `b` is `a or False or c`.
        neutral = isinstance(node.op, ast.And)
        for i in range(len(node.values)):
            values = list(node.values)
            values[i] = ast.Constant(neutral)
            yield "clause", ast.BoolOp(node.op, values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not", node.operand
    elif isinstance(node, ast.If | ast.IfExp):
        yield "condition", _with_test(node, ast.Constant(True))
        yield "condition", _with_test(node, ast.Constant(False))
    elif isinstance(node, ast.While):
        yield "condition", _with_test(node, ast.Constant(False))
    elif isinstance(node, ast.Raise) and node.exc is not None:
        yield "raise", ast.Pass()
    elif isinstance(node, ast.Expr) and _is_removable_call(node.value):
        yield "call", ast.Pass()
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield "constant", ast.Constant(not node.value)
    elif (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and not isinstance(node.value, bool)
    ):
        yield "number", ast.Constant(node.value + 1)
        yield "number", ast.Constant(node.value - 1)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        flipped: ast.operator = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        yield "arith", ast.BinOp(node.left, flipped, node.right)
    elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add | ast.Sub):
        aug: ast.operator = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        yield "arith", ast.AugAssign(node.target, aug, node.value)
    elif isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute):
            for name in _METHODS.get(func.attr, ()):
                new_func = ast.Attribute(func.value, name, ast.Load())
                yield "method", ast.Call(new_func, node.args, node.keywords)
            if func.attr in _FOLDS and not node.args and not node.keywords:
                yield "fold", func.value
        elif isinstance(func, ast.Name) and func.id in _FUNCTIONS:
            new_name = ast.Name(_FUNCTIONS[func.id], ast.Load())
            yield "method", ast.Call(new_name, node.args, node.keywords)


def _with_test(node: ast.If | ast.IfExp | ast.While, test: ast.expr) -> ast.AST:
    if isinstance(node, ast.IfExp):
        return ast.IfExp(test, node.body, node.orelse)
    if isinstance(node, ast.While):
        return ast.While(test, node.body, node.orelse)
    return ast.If(test, node.body, node.orelse)


def _is_removable_call(value: ast.expr) -> bool:
    if isinstance(value, ast.Await):
        value = value.value
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    # Logging changes no decision; its own tests live elsewhere.
    return not (
        isinstance(func, ast.Attribute)
        and func.attr in _LOG_METHODS
        and "log" in ast.unparse(func.value).lower()
    )


def _describe(old: ast.AST, new: ast.AST, context: ast.AST | None) -> str:
    """``old -> new``, short: a dropped clause shows only that clause, and a small
    change (a number, a constant) is shown with the expression around it, so that two
    mutants of one function read differently."""
    if isinstance(old, ast.BoolOp) and isinstance(new, ast.BoolOp) and type(old.op) is type(new.op):
        for before, after in zip(old.values, new.values, strict=True):
            if before is not after:
                return f"{_short(before)} -> {_short(after)} (in `{_short(old, 40)}`)"
    text = f"{_short(old)} -> {_short(new)}"
    if len(text) < 20 and context is not None:
        text += f" (in `{_short(context, 40)}`)"
    return text


def _short(node: ast.AST, limit: int = 70) -> str:
    if isinstance(node, ast.If | ast.While | ast.IfExp):
        text = ast.unparse(node.test)
    elif isinstance(node, ast.Raise) and node.exc is not None:
        text = "raise " + ast.unparse(node.exc)
    elif isinstance(node, ast.Pass):
        text = "pass"
    else:
        text = ast.unparse(node)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- finding and applying mutants -----------------------------------------------------

_Site = tuple[str, str, ast.AST, Callable[[ast.AST], None], ast.AST]


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Top-level functions and methods of top-level classes, with their qualified names."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{item.name}", item


def _children(node: ast.AST) -> Iterator[tuple[ast.AST, Callable[[ast.AST], None]]]:
    """Each child node with a function that puts a replacement in its place."""
    for name, value in ast.iter_fields(node):
        if isinstance(value, ast.AST):
            yield value, _setter(node, name)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield item, _list_setter(value, i)


def _setter(parent: ast.AST, name: str) -> Callable[[ast.AST], None]:
    return lambda new: setattr(parent, name, new)


def _list_setter(items: list[Any], index: int) -> Callable[[ast.AST], None]:
    def put(new: ast.AST) -> None:
        items[index] = new

    return put


def _sites(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[_Site]:
    """(kind, description, node, put, replacement) for every mutation in ``function``."""

    def visit(
        node: ast.AST, put: Callable[[ast.AST], None], parent: ast.AST | None
    ) -> Iterator[_Site]:
        for kind, new in _replacements(node):
            context = parent if not isinstance(parent, ast.stmt) or _is_simple(parent) else None
            yield kind, _describe(node, new, context), node, put, new
        for child, put_child in _children(node):
            yield from visit(child, put_child, node)

    # The body only: decorators and default values run when the function is defined.
    for i, statement in enumerate(function.body):
        if i == 0 and _is_docstring(statement):
            continue
        yield from visit(statement, _list_setter(function.body, i), None)


def _is_simple(statement: ast.stmt) -> bool:
    """A statement short enough to show whole as the context of a small change."""
    return isinstance(statement, ast.Assign | ast.AugAssign | ast.Return | ast.Expr)


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _source(module: str) -> tuple[Path, str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    return path, path.read_text(encoding="utf-8")


def mutants_of(module: str, source: str | None = None) -> list[Mutant]:
    """Every mutant of ``module`` (or of ``source`` given as that module's text)."""
    if source is None:
        source = _source(module)[1]
    tree = ast.parse(source)
    found: list[Mutant] = []
    for qualname, function in _functions(tree):
        counts: dict[str, int] = {}
        for kind, what, node, _put, _new in _sites(function):
            counts[kind] = counts.get(kind, 0) + 1
            line = getattr(node, "lineno", function.lineno)
            found.append(Mutant(module, qualname, kind, counts[kind], what, line))
    return found


def mutated_code(mutant: Mutant, source: str | None = None) -> CodeType:
    """The code object of ``mutant.function`` with the mutation applied."""
    path, text = _source(mutant.module)
    tree = ast.parse(source if source is not None else text)
    for qualname, function in _functions(tree):
        if qualname != mutant.function:
            continue
        counts: dict[str, int] = {}
        for kind, _what, _node, put, new in _sites(function):
            counts[kind] = counts.get(kind, 0) + 1
            if kind == mutant.kind and counts[kind] == mutant.ordinal:
                put(new)
                ast.fix_missing_locations(tree)
                module_code = compile(tree, str(path), "exec")
                return _find_code(module_code, mutant.function)
    raise LookupError(f"no mutant {mutant.key}")


def _find_code(code: CodeType, qualname: str) -> CodeType:
    for const in code.co_consts:
        if isinstance(const, CodeType):
            if const.co_qualname == qualname:
                return const
            with contextlib.suppress(LookupError):
                return _find_code(const, qualname)
    raise LookupError(qualname)


def live_function(module: ModuleType, qualname: str) -> FunctionType:
    """The function object the running program calls for ``qualname``."""
    owner: Any = module
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    value = owner.__dict__[name] if path else getattr(owner, name)
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if isinstance(value, property):
        value = value.fget
    while not isinstance(value, FunctionType) and hasattr(value, "__wrapped__"):
        value = value.__wrapped__
    if not isinstance(value, FunctionType):
        raise LookupError(f"{module.__name__}.{qualname} is not a plain function")
    return value


def apply(mutant: Mutant) -> None:
    """Swap the mutated code into the live function (in this process only)."""
    module = importlib.import_module(mutant.module)
    live_function(module, mutant.function).__code__ = mutated_code(mutant)


# -- the list of equivalent mutants ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Equivalent:
    key: str
    what: str
    reason: str


def load_equivalents(path: Path = EQUIVALENT_FILE) -> dict[str, Equivalent]:
    """``key | what | reason`` lines; ``#`` starts a comment."""
    entries: dict[str, Equivalent] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split(" | ")]
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{path.name}:{number}: expected `key | what | reason`")
        key, what, reason = parts
        if key in entries:
            raise ValueError(f"{path.name}:{number}: {key} listed twice")
        entries[key] = Equivalent(key, what, reason)
    return entries


# -- running --------------------------------------------------------------------------
#
# One pytest session per module, in its own process: it collects the module's tests
# once, runs them unmutated in a forked worker (the baseline, which also times each
# test), then forks one worker per mutant. A worker applies its mutant and runs the
# tests fastest first, stopping at the first failure. Forking after collection keeps
# interpreter start-up, imports and collection out of the per-mutant cost.


@dataclass(frozen=True, slots=True)
class Outcome:
    key: str
    status: str  # killed, timeout, survived, error (...)
    seconds: float


_NOT_APPLICABLE = 97
_SKIPPED = "not applicable"


class _MutantSession:
    """A pytest plugin that replaces the test loop with the mutation loop."""

    def __init__(self, mutants: Sequence[Mutant], jobs: int, verbose: bool) -> None:
        self.mutants = mutants
        self.jobs = jobs
        self.verbose = verbose
        self.outcomes: list[Outcome] = []
        self.baseline: Outcome | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        items = list(session.items)
        timings = ROOT / f".mutation-timings-{os.getpid()}"
        try:
            (self.baseline,) = self._run([None], items, timeout=1800.0, timings=timings)
            if self.baseline.status != "survived":
                return True
            durations = _read_timings(timings)
        finally:
            timings.unlink(missing_ok=True)
        # Fastest first: a mutant is usually caught by a cheap test.
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
        timeout = 5 * self.baseline.seconds + 10
        self.outcomes = self._run(self.mutants, items, timeout)
        return True

    def _run(
        self,
        mutants: Sequence[Mutant | None],
        items: list[pytest.Item],
        timeout: float,
        timings: Path | None = None,
    ) -> list[Outcome]:
        pending = list(mutants)
        running: dict[int, tuple[Mutant | None, float]] = {}
        results: list[Outcome] = []
        while pending or running:
            while pending and len(running) < self.jobs:
                mutant = pending.pop(0)
                pid = os.fork()
                if pid == 0:
                    self._worker(mutant, items, timings)
                running[pid] = (mutant, time.monotonic())
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                now = time.monotonic()
                for worker, (_mutant, started) in running.items():
                    if now - started > timeout:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker, signal.SIGKILL)
                time.sleep(0.01)
                continue
            mutant, started = running.pop(pid)
            key = mutant.key if mutant is not None else "baseline"
            results.append(Outcome(key, _status(status), time.monotonic() - started))
        return results

    def _worker(
        self, mutant: Mutant | None, items: list[pytest.Item], timings: Path | None
    ) -> None:
        code = 3
        try:
            random.seed()  # workers must not share the parent's random state
            if not self.verbose:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
            if mutant is not None:
                try:
                    apply(mutant)
                except Exception:
                    code = _NOT_APPLICABLE
                    return
            code = 0
            seen: dict[str, float] = {}
            for i, item in enumerate(items):
                nextitem = items[i + 1] if i + 1 < len(items) else None
                reports = runtestprotocol(item, nextitem=nextitem, log=False)
                seen[item.nodeid] = sum(report.duration for report in reports)
                if any(report.failed for report in reports):
                    if self.verbose:
                        print(f"{mutant.key if mutant else 'baseline'}: {item.nodeid} failed")
                    code = 1
                    break
            if timings is not None:
                timings.write_text(
                    "\n".join(f"{d:.6f} {nodeid}" for nodeid, d in seen.items()), "utf-8"
                )
        finally:
            os._exit(code)


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return "timeout"
    code = os.WEXITSTATUS(status)
    if code == 0:
        return "survived"
    if code == 1:
        return "killed"
    if code == _NOT_APPLICABLE:
        return _SKIPPED
    return f"error (worker exit {code})"


def _read_timings(path: Path) -> dict[str, float]:
    timings: dict[str, float] = {}
    for line in path.read_text("utf-8").splitlines():
        seconds, nodeid = line.split(" ", 1)
        timings[nodeid] = float(seconds)
    return timings


def run_module(module: str, jobs: int, verbose: bool = False) -> tuple[Outcome, list[Outcome]]:
    """Run every mutant of ``module`` against its tests; (baseline, outcomes)."""
    mutants = mutants_of(module)
    plugin = _MutantSession(mutants, jobs, verbose)
    args = ["-p", "no:cacheprovider", "-o", "addopts=--strict-markers"]
    args += ["-q", "--no-header"] if verbose else ["-p", "no:terminal"]
    pytest.main([*args, *TARGETS[module]], plugins=[plugin])
    if plugin.baseline is None:
        return Outcome("baseline", "error (tests were not collected)", 0.0), []
    return plugin.baseline, plugin.outcomes


def _session_main(module: str, jobs: int, verbose: bool, results: Path) -> int:
    os.chdir(ROOT)
    baseline, outcomes = run_module(module, jobs, verbose)
    lines = [f"{o.key}\t{o.status}\t{o.seconds:.3f}" for o in [baseline, *outcomes]]
    results.write_text("\n".join(lines) + "\n", "utf-8")
    return 0


def select(modules: Sequence[str]) -> list[str]:
    if not modules:
        return list(TARGETS)
    chosen = [m for m in TARGETS if any(m == p or m.startswith(p + ".") for p in modules)]
    if not chosen:
        raise SystemExit(f"no security-core module matches {', '.join(modules)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=_SUMMARY)
    parser.add_argument("modules", nargs="*", help="limit to these modules (dotted prefixes)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel workers (2)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the test output")
    parser.add_argument("--session", metavar="RESULTS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    modules = select(args.modules)
    if args.session:
        return _session_main(modules[0], args.jobs, args.verbose, Path(args.session))
    everything = [mutant for module in modules for mutant in mutants_of(module)]
    if args.list:
        for mutant in everything:
            print(f"{mutant.key}  line {mutant.line}  {mutant.what}")
        return 0

    equivalents = load_equivalents()
    known = {m.key: m for m in everything}
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for module in modules:
        results = ROOT / f".mutation-results-{os.getpid()}"
        try:
            command = [sys.executable, "-m", "tests.mutation.runner", module]
            command += ["--session", str(results), "-j", str(args.jobs)]
            subprocess.run([*command, *(["-v"] if args.verbose else [])], cwd=ROOT, check=False)
            if not results.exists():
                print(f"{module}: the mutation session failed (see above)")
                return 2
            rows = [line.split("\t") for line in results.read_text("utf-8").splitlines()]
        finally:
            results.unlink(missing_ok=True)
        (_, base_status, base_seconds), *rest = rows
        if base_status != "survived":
            print(f"{module}: its tests fail without any mutant ({base_status})")
            return 2
        done = [Outcome(key, status, float(seconds)) for key, status, seconds in rest]
        outcomes.extend(done)
        counts = {s: sum(o.status == s for o in done) for s in ("killed", "timeout", "survived")}
        print(
            f"{module}: {len(done)} mutants, {counts['killed']} killed, "
            f"{counts['timeout']} timed out, {counts['survived']} survived "
            f"(its tests: {float(base_seconds):.1f} s)",
            flush=True,
        )
        for o in done:
            if o.status == "survived" and o.key not in equivalents:
                print(f"  survived: {o.key}  {known[o.key].what}", flush=True)
    return report(outcomes, equivalents, everything, time.monotonic() - started)


def report(
    outcomes: Sequence[Outcome],
    equivalents: dict[str, Equivalent],
    everything: Sequence[Mutant],
    seconds: float,
) -> int:
    """Print the survivors nobody judged, stale entries and the score; 1 if any survivor."""
    known = {m.key: m for m in everything}
    survivors = [known[o.key] for o in outcomes if o.status == "survived"]
    # A mutant that cannot be swapped in (it drops `super()`, so the code object needs
    # other free variables) is reported, not counted.
    skipped = [o for o in outcomes if o.status == _SKIPPED]
    errors = [o for o in outcomes if o.status.startswith("error")]
    judged = [m for m in survivors if m.key in equivalents and equivalents[m.key].what == m.what]
    unjudged = [m for m in survivors if m not in judged]
    modules = {m.module for m in everything}
    stale = [
        e
        for e in equivalents.values()
        if e.key.split(":", 1)[0] in modules and (e.key not in known or known[e.key].what != e.what)
    ]
    killed = sum(o.status in ("killed", "timeout") for o in outcomes)
    total = len(outcomes) - len(errors) - len(skipped)
    meaningful = total - len(judged)
    score = 100.0 * killed / meaningful if meaningful else 100.0
    for o in skipped:
        print(f"not applicable: {o.key}  {known[o.key].what}")
    for o in errors:
        print(f"ERROR {o.status}: {o.key}  {known[o.key].what}")
    for e in stale:
        print(f"STALE equivalent entry (the code changed; judge it again): {e.key}  {e.what}")
    for m in unjudged:
        print(f"SURVIVED {m.key}  line {m.line}  {m.what}")
    print(
        f"{total} mutants: {killed} killed, {len(judged)} equivalent (listed), "
        f"{len(unjudged)} survived, {len(skipped)} not applicable; {score:.1f} % of the "
        f"non-equivalent mutants killed ({seconds / 60:.1f} min)"
    )
    return 1 if unjudged or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
