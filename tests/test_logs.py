import asyncio
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from trustpub.logs import JSONFormatter, configure, log_fields


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


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """``configure`` changes process-wide loggers: put them back afterwards."""
    names = ["trustpub", "uvicorn", "uvicorn.error", "uvicorn.access", ""]
    saved = [
        (logger, logger.handlers[:], logger.level, logger.propagate)
        for logger in (logging.getLogger(name) for name in names)
    ]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restored_loggers")
def test_configure_sends_trustpub_logs_to_stderr_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("debug")
    logging.getLogger("trustpub.test").debug("hello", extra={"fields": {"n": 1}})
    entry = json.loads(capsys.readouterr().err.strip())
    assert entry["msg"] == "hello"
    assert entry["n"] == 1


@pytest.mark.usefixtures("restored_loggers")
def test_uvicorn_asyncio_and_other_libraries_log_json_lines_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("info")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("asyncio").error("socket.accept() out of system resource")
    logging.getLogger("uvicorn.error").info("Started server process [1]")  # below warning
    lines = capsys.readouterr().err.strip().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["logger"], e["level"]) for e in entries] == [
        ("uvicorn.error", "warning"),
        ("asyncio", "error"),
    ]


def _record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("trustpub.audit", logging.INFO, __file__, 1, "x", (), None)
    record.created = created
    record.msecs = int((created - int(created)) * 1000)
    return record


def test_json_formatter_timestamps_follow_each_records_second() -> None:
    # The formatted second is cached; a record of another second must not reuse it.
    formatter = JSONFormatter()
    first = json.loads(formatter.format(_record_at(1_769_941_559.25)))["ts"]
    same = json.loads(formatter.format(_record_at(1_769_941_559.5)))["ts"]
    later = json.loads(formatter.format(_record_at(1_769_941_560.125)))["ts"]
    earlier = json.loads(formatter.format(_record_at(1_769_941_500.0)))["ts"]
    assert first == "2026-02-01T10:25:59.250Z"
    assert same == "2026-02-01T10:25:59.500Z"
    assert later == "2026-02-01T10:26:00.125Z"
    assert earlier == "2026-02-01T10:25:00.000Z"


def test_log_fields_makes_a_record_with_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("trustpub.test.fields")
    with caplog.at_level(logging.INFO, logger="trustpub.test.fields"):
        log_fields(logger, logging.INFO, "request", {"status": 200})
        log_fields(logger, logging.DEBUG, "hidden", {"status": 500})
    assert [(r.getMessage(), r.fields) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("request", {"status": 200})
    ]


def _line(msg: str, args: tuple[object, ...] = (), fields: object = None) -> str:
    record = logging.LogRecord("trustpub.test", logging.INFO, __file__, 1, msg, args, None)
    if fields is not None:
        record.fields = fields
    return JSONFormatter().format(record)


def test_a_lone_surrogate_in_a_message_or_field_still_gives_an_ascii_line() -> None:
    line = _line("crate `\ud800` refused", fields={"crate": "\udfff", "n\ud800": 1})
    assert line.isascii()
    entry = json.loads(line)
    assert entry["msg"] == "crate `\ud800` refused"
    assert entry["crate"] == "\udfff"
    line.encode("utf-8")  # writable to any stream


def test_a_message_whose_arguments_do_not_fit_still_gives_a_line() -> None:
    entry = json.loads(_line("%d crates", ("many",)))
    assert entry["msg"].startswith("%d crates (unformattable arguments")


def test_fields_json_cannot_hold_are_written_as_text() -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    for fields in ({(1, 2): "tuple key"}, {"loop": loop}):
        entry = json.loads(_line("event", fields=fields))
        assert entry["msg"] == "event"
        assert entry["log_error"].startswith("fields not JSON")
        assert isinstance(entry["fields"], str)


@pytest.mark.usefixtures("restored_loggers")
def test_log_fields_writes_through_our_handler_alone_the_line_a_record_would_give(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure("info")
    made: list[logging.LogRecord] = []
    original = logging.Logger.makeRecord

    def counted(self: logging.Logger, *args: object, **kwargs: object) -> logging.LogRecord:
        made.append(original(self, *args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(logging.Logger, "makeRecord", counted)
    fields = {"method": "GET", "status": 200, "text": "caf\u00e9 \ud800", "n": [1, {"a": None}]}
    log_fields(logging.getLogger("trustpub.access"), logging.INFO, "request", fields)
    assert made == []  # our handler alone: no record was made
    direct = json.loads(capsys.readouterr().err)
    record = logging.getLogger("trustpub.access").makeRecord(
        "trustpub.access", logging.INFO, "", 0, "request", (), None, None, {"fields": fields}
    )
    through_record = json.loads(JSONFormatter().format(record))
    assert direct.pop("ts").endswith("Z")
    through_record.pop("ts")
    assert direct == through_record
    # Below the level: nothing at all.
    log_fields(logging.getLogger("trustpub.access"), logging.DEBUG, "request", fields)
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("restored_loggers")
def test_log_fields_makes_a_record_when_another_handler_or_a_filter_is_on_the_way(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("info")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    other = Keep()
    logging.getLogger("trustpub").addHandler(other)
    access = logging.getLogger("trustpub.access")
    log_fields(access, logging.INFO, "request", {"status": 200})
    assert [r.fields for r in seen] == [{"status": 200}]  # type: ignore[attr-defined]
    assert json.loads(capsys.readouterr().err)["status"] == 200
    logging.getLogger("trustpub").removeHandler(other)

    access.addFilter(lambda record: False)
    try:
        log_fields(access, logging.INFO, "request", {"status": 200})
        assert capsys.readouterr().err == ""  # the filter had its say
    finally:
        access.filters.clear()


@pytest.mark.usefixtures("restored_loggers")
def test_a_failed_write_is_the_handlers_error_to_report_not_the_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure("info")
    [handler] = logging.getLogger("trustpub").handlers
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", reported.append)

    class Broken:
        def write(self, text: str) -> int:
            raise OSError("disk full")

        def flush(self) -> None:
            pass

    monkeypatch.setattr(handler, "stream", Broken())
    log_fields(logging.getLogger("trustpub.audit"), logging.INFO, "exchange", {"k": 1})
    assert [r.getMessage() for r in reported] == ["exchange"]


class CountingStream:
    """A text stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def _our_handler(stream: object) -> logging.Handler:
    configure("info")
    [handler] = logging.getLogger("trustpub").handlers
    handler.setStream(stream)  # type: ignore[attr-defined]
    return handler


@pytest.mark.usefixtures("restored_loggers")
def test_the_lines_of_one_turn_of_the_loop_leave_in_one_write_in_order() -> None:
    stream = CountingStream()
    _our_handler(stream)
    log = logging.getLogger("trustpub.access")

    async def one_turn() -> list[str]:
        for n in range(5):
            log_fields(log, logging.INFO, "request", {"n": n})
        logging.getLogger("trustpub.x").info("record line")  # through a record, too
        before = list(stream.writes)
        await asyncio.sleep(0)  # the turn ends
        return before

    assert asyncio.run(one_turn()) == []  # nothing written during the turn
    [written] = stream.writes
    assert [json.loads(line).get("n") for line in written.splitlines()] == [0, 1, 2, 3, 4, None]
    # Without a running loop (a thread, start-up): at once.
    log_fields(log, logging.INFO, "request", {"n": 9})
    assert json.loads(stream.writes[-1])["n"] == 9


@pytest.mark.usefixtures("restored_loggers")
def test_a_line_from_another_thread_comes_after_those_that_wait() -> None:
    stream = CountingStream()
    _our_handler(stream)
    log = logging.getLogger("trustpub.audit")

    async def turn() -> None:
        log_fields(log, logging.INFO, "exchange", {"n": 1})
        thread = threading.Thread(target=log_fields, args=(log, logging.INFO, "x", {"n": 2}))
        thread.start()
        thread.join()

    asyncio.run(turn())
    lines = [json.loads(line)["n"] for text in stream.writes for line in text.splitlines()]
    assert lines == [1, 2]


@pytest.mark.usefixtures("restored_loggers")
def test_lines_waiting_are_written_at_exit_and_a_failed_write_does_not_reach_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = CountingStream()
    handler = _our_handler(stream)
    log = logging.getLogger("trustpub.audit")

    async def leave_a_line() -> None:
        log_fields(log, logging.INFO, "exchange", {"n": 1})

    loop = asyncio.new_event_loop()
    loop.run_until_complete(leave_a_line())
    loop.close()  # the turn's flush never ran
    handler.flush()  # logging.shutdown does this at exit
    assert json.loads(stream.writes[-1])["n"] == 1

    class Broken(CountingStream):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler.setStream(Broken())  # type: ignore[attr-defined]
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", reported.append)
    errors: list[object] = []

    async def failing_turn() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(1))
        log_fields(log, logging.INFO, "exchange", {"n": 2})
        await asyncio.sleep(0.01)

    asyncio.run(failing_turn())
    assert len(reported) == 1
    assert errors == []
