"""JSON for the hot paths, by orjson, with exactly the standard ``json`` module's results.

Reading (``loads``): orjson parses, and its result is kept when it is the standard
parser's. orjson refuses more than the standard parser (NaN and Infinity, numbers too
large for a double, lone surrogates in ``\\u`` escapes) and accepts nothing it refuses;
the one value it reads otherwise is an integer beyond 64 bits, which it turns into a
float. So a document orjson refuses, or whose result holds a float, is parsed again by
the standard parser, with its own answer or error (tests/test_jsoncodec.py compares the
two on mutated documents). A request body's JSON cost 16 us with the standard parser
on the benchmark machine, 4 us this way.

Writing, for the three hot writers: log lines, response bodies, stored token records.
Each is written by orjson, and checked against what the standard library's encoder with
that writer's settings would write; where orjson writes something else or cannot write
the value at all, the standard encoder writes it, as it always did:

- a log line must be ASCII (any stream can take it) and a stored record is ASCII with
  sorted keys: orjson writes UTF-8 and leaves DEL (0x7f) as it is, so a line or record
  holding either (rare: a claim or a user agent outside ASCII) goes to the standard
  encoder, which escapes them exactly as before;
- orjson refuses what it cannot write byte-for-byte as JSON from UTF-8 (a lone
  surrogate, an integer beyond 64 bits, a key that is not a string, nesting deeper than
  254): those values go to the standard encoder, with its own answer or error;
- dataclasses and datetimes are passed to ``default`` (``str`` for log lines), as the
  standard encoder does, rather than written as orjson's objects.

So every output holds the JSON value the standard encoder would have written. Two
differences remain, both in floats: a float may be spelt otherwise (``0.00001`` for
``1e-05``), and in a log line or a record NaN or an infinity is written ``null`` where
the standard encoder writes ``NaN``, which is not JSON (a response body with a ``null``
goes to the standard encoder, which refuses them, as Starlette's does).

Why not the standard encoder alone: with 32 concurrent requests on one worker it cost
15-20 us of CPU per line on the benchmark machine, orjson 1.5-2 us (``python -m timeit``
on an access line and an exchange's audit line), and an exchange writes two lines, one
record and one response: 5 % of the exchange's CPU (py-spy, ``bench/run --profile``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import orjson

_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME

# The standard encoders, built once: json.dumps with options builds one per call.
_LINE = json.JSONEncoder(default=str, separators=(",", ":"))
_RESPONSE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_RECORD = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _escaped_ascii(written: bytes) -> bool:
    """Whether ``written`` is what an ASCII-escaping encoder writes: no byte above
    0x7e (the standard encoder escapes DEL, 0x7f, too)."""
    return written.isascii() and b"\x7f" not in written


def _orjson(value: Any, option: int, default: Callable[[Any], Any] | None) -> bytes | None:
    try:
        return orjson.dumps(value, default=default, option=option)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None


def _holds_float(value: object) -> bool:
    """Whether a value orjson read holds a float (its types are exactly dict, list,
    str, int, float, bool and None; a loop over one level at a time, as a generator
    per container cost 11 us on a JWT payload, this 2.4 us)."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        members: Iterable[object] = value.values()  # type: ignore[attr-defined]
    elif kind is list:
        members = value  # type: ignore[assignment]
    else:
        return False
    for member in members:
        member_kind = type(member)
        if member_kind is float:
            return True
        if (member_kind is dict or member_kind is list) and _holds_float(member):
            return True
    return False


def loads(document: str | bytes) -> Any:
    """``json.loads(document)``, by orjson when its result is the same (see above).
    Raises what ``json.loads`` raises (``ValueError``, ``RecursionError``)."""
    try:
        value = orjson.loads(document)
    except orjson.JSONDecodeError:
        return json.loads(document)
    if _holds_float(value):
        return json.loads(document)
    return value


def loads_utf8(document: bytes) -> Any:
    """``json.loads(document.decode("utf-8").removeprefix("\\ufeff"))``: strict UTF-8
    (never UTF-16 or an encoded surrogate), a byte order mark ignored. orjson reads the
    bytes as they are where it can (it accepts only valid UTF-8, and no byte order
    mark), sparing their decoding and its own encoding of the text back to UTF-8."""
    try:
        value = orjson.loads(document)
    except orjson.JSONDecodeError:
        return loads(document.decode("utf-8").removeprefix("\ufeff"))
    if _holds_float(value):
        return json.loads(document.decode("utf-8"))
    return value


def log_line(value: Any) -> str:
    """Compact ASCII JSON, unknown types as ``str()`` (raises as ``json`` would)."""
    fast = _orjson(value, _PASSTHROUGH, str)
    if fast is not None and _escaped_ascii(fast):
        return fast.decode("ascii")
    return _LINE.encode(value)


def response_body(value: Any) -> bytes:
    """Compact JSON in UTF-8; a lone surrogate inside a string becomes its ``\\uXXXX``
    escape, the JSON for that very string (UTF-8 has no form for it)."""
    fast = _orjson(value, _PASSTHROUGH, None)
    # orjson writes a NaN or an infinity as null, where a response must refuse it (as
    # Starlette's does): a body with a null is written again by the standard encoder.
    if fast is not None and b"null" not in fast:
        return fast
    return _RESPONSE.encode(value).encode("utf-8", "backslashreplace")


def sorted_ascii(value: Any) -> bytes:
    """Compact ASCII JSON with sorted keys (a stored record's deterministic form)."""
    fast = _orjson(value, _PASSTHROUGH | orjson.OPT_SORT_KEYS, None)
    if fast is not None and _escaped_ascii(fast):
        return fast
    return _RECORD.encode(value).encode("ascii")
