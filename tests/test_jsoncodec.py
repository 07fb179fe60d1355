"""trustpub.jsoncodec: orjson's output where it is what the standard encoder writes,
the standard encoder's wherever it is not."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest

from trustpub.jsoncodec import loads, loads_utf8, log_line, response_body, sorted_ascii

LINE = json.JSONEncoder(default=str, separators=(",", ":"))
RESPONSE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
RECORD = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


@dataclasses.dataclass
class Point:
    x: int


VALUES: list[Any] = [
    {"a": 1, "b": [True, False, None], "c": {"d": "e"}, "f": 12.5},
    {"msg": 'quote " backslash \\ newline \n tab \t nul \x00 del \x7f'},
    {"z": 1, "a": {"y": 2, "b": 3}},
    {"ua": "caf\u00e9 \u2028 \U0001f600"},  # not ASCII
    {"lone": "\ud800"},  # a lone surrogate: orjson refuses it
    {"big": 2**70},  # beyond 64 bits: orjson refuses it
    {1: "int key"},  # a key that is not a string: orjson refuses it
    {"t": (1, 2), "nested": [[[[]]]]},
]


@pytest.mark.parametrize("value", VALUES)
def test_a_log_line_is_what_the_standard_encoder_writes(value: Any) -> None:
    assert log_line(value) == LINE.encode(value)
    assert log_line(value).isascii()


@pytest.mark.parametrize("value", VALUES)
def test_a_record_is_what_the_standard_encoder_writes(value: Any) -> None:
    assert sorted_ascii(value) == RECORD.encode(value).encode("ascii")


@pytest.mark.parametrize("value", VALUES)
def test_a_response_body_is_what_the_standard_encoder_writes(value: Any) -> None:
    expected = RESPONSE.encode(value).encode("utf-8", "backslashreplace")
    assert response_body(value) == expected


def test_unknown_types_in_a_log_line_are_written_as_str() -> None:
    when = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
    value = {"point": Point(1), "when": when, "set": {1}}
    assert log_line(value) == LINE.encode(value)
    assert '"point":"Point(x=1)"' in log_line(value)


def test_what_the_standard_encoder_refuses_is_refused() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular reference"):
        log_line(loop)
    with pytest.raises(TypeError):
        response_body({"point": Point(1)})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_response_refuses_nan_and_infinities(bad: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        response_body({"value": bad, "other": None})


def test_nesting_beyond_orjson_s_limit_is_still_written() -> None:
    deep: Any = "leaf"
    for _ in range(300):
        deep = [deep]
    assert log_line(deep) == LINE.encode(deep)
    assert response_body(deep) == RESPONSE.encode(deep).encode()


def test_random_text_is_written_as_the_standard_encoder_writes_it() -> None:
    import random

    rng = random.Random(14)
    alphabet = [chr(c) for c in range(0x80)] + [
        "\u00e9",
        "\u2028",
        "\ud800",
        "\udfff",
        "\U0001f600",
    ]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        value = {text: text, "n": rng.randrange(-(2**66), 2**66)}
        assert log_line(value) == LINE.encode(value)
        assert sorted_ascii(value) == RECORD.encode(value).encode("ascii")
        expected = RESPONSE.encode(value).encode("utf-8", "backslashreplace")
        assert response_body(value) == expected


# -- reading ---------------------------------------------------------------------------

DOCUMENTS = [
    '{"jwt":"eyJ.a.b","n":1,"f":1.5,"t":true,"z":null,"l":[1,-2,3e2]}',
    "[1e309]",
    "[NaN, Infinity, -Infinity]",
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"\\ud83d\\ude00"',
    "123456789012345678901234567890",
    '{"big":[18446744073709551616,-9223372036854775809]}',
    "[9223372036854775807,-9223372036854775808]",
    '{"a":1,"a":2}',
    " \t\r\n[1]\n",
    "\ufeff[1]",
    '"\x00"',
    '"\\u0000"',
    "[" * 2000 + "]" * 2000,
]


def standard(document: str | bytes) -> tuple[str, object]:
    try:
        return "ok", json.loads(document)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def ours(document: str | bytes) -> tuple[str, object]:
    try:
        return "ok", loads(document)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def same(a: tuple[str, object], b: tuple[str, object]) -> bool:
    # repr: NaN != NaN, and 1 == 1.0 == True would hide a changed type.
    return a[0] == b[0] and repr(a[1]) == repr(b[1])


@pytest.mark.parametrize("document", DOCUMENTS)
def test_a_document_reads_as_the_standard_parser_reads_it(document: str) -> None:
    for form in (document, document.encode("utf-8", "surrogatepass")):
        assert same(ours(form), standard(form))


def test_bytes_in_other_encodings_read_as_the_standard_parser_reads_them() -> None:
    for raw in ('{"a": "\u00e9"}'.encode("utf-16"), b'"\xed\xa0\x80"', b"\xef\xbb\xbf[1]"):
        assert same(ours(raw), standard(raw))


def test_mutated_documents_read_as_the_standard_parser_reads_them() -> None:
    import random

    rng = random.Random(14)
    seeds = [d for d in DOCUMENTS if len(d) < 200]
    pieces = [
        *list('{}[]",:.-+eE0123456789 \\/utfnalsrNIy\t\n\x00\x1f\x7f'),
        "\\u",
        "\\ud800",
        "\u00e9",
        "true",
        "null",
        "1e400",
        "99999999999999999999",
    ]
    for _ in range(20000):
        doc = list(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(doc) + 1)
            if rng.random() < 0.5 and doc:
                del doc[min(at, len(doc) - 1)]
            else:
                doc.insert(at, rng.choice(pieces))
        document = "".join(doc)
        assert same(ours(document), standard(document)), document
        raw = document.encode("utf-8", "surrogatepass")
        assert same(strict_ours(raw), strict_standard(raw)), document


def strict_standard(document: bytes) -> tuple[str, object]:
    try:
        return "ok", json.loads(document.decode("utf-8").removeprefix("\ufeff"))
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def strict_ours(document: bytes) -> tuple[str, object]:
    try:
        return "ok", loads_utf8(document)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


@pytest.mark.parametrize(
    "document",
    [
        *(d.encode("utf-8", "surrogatepass") for d in DOCUMENTS),
        b"\xef\xbb\xbf{}",
        b'"\xc0\xaf"',
        b'"\xed\xa0\x80"',
        b'"\xf4\x90\x80\x80"',
        b'"\xe2\x82"',
        b'"\xff"',
        '{"a": "\u00e9"}'.encode("utf-16"),
        b'{"f": 1.5, "big": 18446744073709551616}',
    ],
)
def test_strict_utf8_documents_read_as_decoding_then_parsing_reads_them(document: bytes) -> None:
    assert same(strict_ours(document), strict_standard(document))
