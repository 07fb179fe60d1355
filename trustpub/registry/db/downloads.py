"""Download counts: per version and UTC day (``version_downloads``), with totals on
``versions`` and ``crates`` kept in the same transaction.

Days are ``'YYYY-MM-DD'`` strings (TEXT on both engines; they sort and compare as
the days do). The counting itself, in memory and in batches, is
``trustpub.registry.downloads``; this module only adds a batch and reads the counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from trustpub.registry.db.queries import RECENT_SUM, Connection

T = TypeVar("T")

#: A batch: (version id, day) -> downloads counted.
Counts = Mapping[tuple[int, str], int]


@dataclass(frozen=True, slots=True)
class DayCount:
    """Downloads of one version (``version_id``; None: several, added up) on one day."""

    version_id: int | None
    date: str
    downloads: int


def add(conn: Connection, counts: Counts) -> int:
    """Add ``counts`` (call inside a write transaction); returns how many downloads
    were recorded. A version deleted since it was counted is skipped, never an error:
    one such count must not keep the whole batch from being written.

    A few statements per batch, however large (multi-row upserts, and the totals by
    ``CASE``, CHUNK rows at a time): the transaction holds the writer lock, so its
    length is every publish's wait, and on PostgreSQL each statement is a round trip.
    """
    items = sorted((key, n) for key, n in counts.items() if n > 0)
    crate_of: dict[int, int] = {}
    for ids in _chunks(sorted({version_id for (version_id, _), _ in items})):
        marks = ", ".join("?" for _ in ids)
        found = conn.execute(
            f"SELECT id, crate_id FROM versions WHERE id IN ({marks})",  # noqa: S608
            ids,
        ).fetchall()
        crate_of.update((int(r["id"]), int(r["crate_id"])) for r in found)
    kept = [(version_id, day, n) for (version_id, day), n in items if version_id in crate_of]
    for rows in _chunks(kept):
        values = ", ".join("(?, ?, ?)" for _ in rows)
        conn.execute(
            "INSERT INTO version_downloads (version_id, date, downloads)"  # noqa: S608
            f" VALUES {values} ON CONFLICT (version_id, date)"
            " DO UPDATE SET downloads = version_downloads.downloads + excluded.downloads",
            [value for row in rows for value in row],
        )
    per_version: dict[int, int] = defaultdict(int)
    per_crate: dict[int, int] = defaultdict(int)
    for version_id, _, n in kept:
        per_version[version_id] += n
        per_crate[crate_of[version_id]] += n
    _add_totals(conn, "versions", per_version)
    _add_totals(conn, "crates", per_crate)
    return sum(per_version.values())


CHUNK = 500  # rows per statement: 1,500 parameters, far below either engine's limit


def _chunks(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def _add_totals(conn: Connection, table: str, totals: Mapping[int, int]) -> None:
    """``downloads += n`` on the rows of ``table`` ("versions" or "crates") by id."""
    for chunk in _chunks(sorted(totals.items())):
        cases = " ".join("WHEN ? THEN ?" for _ in chunk)
        marks = ", ".join("?" for _ in chunk)
        conn.execute(
            f"UPDATE {table} SET downloads = downloads + CASE id {cases} END"  # noqa: S608
            f" WHERE id IN ({marks})",
            [*(value for pair in chunk for value in pair), *(i for i, _ in chunk)],
        )


def recent(conn: Connection, crate_ids: Sequence[int], since: str) -> dict[int, int]:
    """Each crate's downloads on ``since`` and later (every crate asked, 0 if none)."""
    found = dict.fromkeys(crate_ids, 0)
    if not crate_ids:
        return found
    marks = ", ".join("?" for _ in crate_ids)
    rows = conn.execute(
        # Only placeholders and constants are formatted into these statements.
        f"SELECT id, {RECENT_SUM} AS n FROM crates WHERE id IN ({marks})",  # noqa: S608
        (since, *crate_ids),
    ).fetchall()
    for row in rows:
        found[int(row["id"])] = int(row["n"])
    return found


def per_version(
    conn: Connection, version_ids: Sequence[int], since: str, until: str
) -> list[DayCount]:
    """The daily counts of ``version_ids`` from ``since`` to ``until`` (both included),
    by day, then version."""
    if not version_ids:
        return []
    marks = ", ".join("?" for _ in version_ids)
    rows = conn.execute(
        "SELECT version_id, date, downloads FROM version_downloads"  # noqa: S608
        f" WHERE version_id IN ({marks}) AND date >= ? AND date <= ?"
        " ORDER BY date, version_id",
        (*version_ids, since, until),
    ).fetchall()
    return [DayCount(int(r["version_id"]), str(r["date"]), int(r["downloads"])) for r in rows]


def per_day(conn: Connection, version_ids: Sequence[int], since: str, until: str) -> list[DayCount]:
    """The counts of ``version_ids`` added up by day, from ``since`` to ``until``."""
    if not version_ids:
        return []
    marks = ", ".join("?" for _ in version_ids)
    rows = conn.execute(
        "SELECT date, SUM(downloads) AS n FROM version_downloads"  # noqa: S608
        f" WHERE version_id IN ({marks}) AND date >= ? AND date <= ?"
        " GROUP BY date ORDER BY date",
        (*version_ids, since, until),
    ).fetchall()
    return [DayCount(None, str(r["date"]), int(r["n"])) for r in rows]
