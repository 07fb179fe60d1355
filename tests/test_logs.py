import json
import logging

import pytest

from trustpub.logs import JSONFormatter, configure


def test_json_formatter_writes_one_object_with_the_fields() -> None:
    record = logging.LogRecord("trustpub.audit", logging.INFO, __file__, 1, "exchange", (), None)
    record.fields = {"outcome": "issued", "crates": {"a": ["yank"]}}
    line = JSONFormatter().format(record)
    entry = json.loads(line)
    assert entry["logger"] == "trustpub.audit"
    assert entry["level"] == "info"
    assert entry["msg"] == "exchange"
    assert entry["outcome"] == "issued"
    assert entry["crates"] == {"a": ["yank"]}
    assert entry["ts"].endswith("Z")
    assert "\n" not in line


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "trustpub", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JSONFormatter().format(record))
    assert "RuntimeError: boom" in entry["exc"]


def test_configure_sends_trustpub_logs_to_stderr_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger("trustpub")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        configure("debug")
        logging.getLogger("trustpub.test").debug("hello", extra={"fields": {"n": 1}})
        entry = json.loads(capsys.readouterr().err.strip())
        assert entry["msg"] == "hello"
        assert entry["n"] == 1
    finally:
        root.handlers[:], root.level, root.propagate = saved
