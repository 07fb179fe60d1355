"""Download counts: per version and UTC day (``version_downloads``), with totals on
``versions`` and ``crates`` kept in the same transaction.

Days are ``'YYYY-MM-DD'`` strings (TEXT on both engines; they sort and compare as
the days do). The counting itself, in memory and in batches, is
``trustpub.registry.downloads``; this module only adds a batch and reads the counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trustpub.registry.db.queries import Connection

#: A batch: (version id, day) -> downloads counted.
Counts = Mapping[tuple[int, str], int]

#: A crate's downloads on a day and later, as an SQL expression on a row of ``crates``
#: (its one placeholder: the first day). For ORDER BY too (a sort by recent downloads).
RECENT_SUM = (
    "(SELECT COALESCE(SUM(d.downloads), 0) FROM version_downloads d"
    " JOIN versions v ON v.id = d.version_id WHERE v.crate_id = crates.id AND d.date >= ?)"
)


@dataclass(frozen=True, slots=True)
class DayCount:
    """Downloads of one version (``version_id``; None: several, added up) on one day."""

    version_id: int | None
    date: str
    downloads: int


def add(conn: Connection, counts: Counts) -> int:
    """Add ``counts`` (call inside a write transaction); returns how many downloads
    were recorded. A version deleted since it was counted is skipped, never an error:
    one such count must not keep the whole batch from being written."""
    recorded = 0
    totals: dict[int, int] = defaultdict(int)
    for (version_id, day), n in sorted(counts.items()):
        if n <= 0:
            continue
        # INSERT ... SELECT ... WHERE: SQLite needs the WHERE to read ON CONFLICT as the
        # upsert clause; both engines add to the row of an earlier batch.
        found = conn.execute(
            "INSERT INTO version_downloads (version_id, date, downloads)"
            " SELECT id, ?, ? FROM versions WHERE id = ?"
            " ON CONFLICT (version_id, date)"
            " DO UPDATE SET downloads = version_downloads.downloads + excluded.downloads",
            (day, n, version_id),
        )
        if found.rowcount > 0:
            totals[version_id] += n
    for version_id, n in totals.items():
        conn.execute("UPDATE versions SET downloads = downloads + ? WHERE id = ?", (n, version_id))
        conn.execute(
            "UPDATE crates SET downloads = downloads + ?"
            " WHERE id = (SELECT crate_id FROM versions WHERE id = ?)",
            (n, version_id),
        )
        recorded += n
    return recorded


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
