"""``RegistryDB``: the registry's metadata (users and their API tokens, crates,
versions, owners), the one typed face of this package.

Each method is one read or one transaction (``queries``, ``writes``) run by an
``Engine``: connections, transactions, guards, and failures raised as
``StorageUnavailable``: ``sqlite.SQLiteEngine`` for a file (the default), or
``postgresql.PostgreSQLEngine`` for a ``postgresql://`` URL (replicas on several
hosts). Both run the same migrations, queries and writes. Blocking: call it from a
worker thread in async code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from trustpub.postgres import is_postgresql_url
from trustpub.registry.db import configs, downloads, events, index_files, queries, writes
from trustpub.registry.db.errors import (
    CommitFailed,
    CrateNotFound,
    PublishOutcomeUnknown,
    StorageUnavailable,
    VersionExists,
    VersionNotFound,
)
from trustpub.registry.db.events import AuditEvent, Delivery, Webhook
from trustpub.registry.db.postgresql import PostgreSQLEngine
from trustpub.registry.db.rows import (
    ApiToken,
    CrateRow,
    CrateState,
    DependencyRow,
    Invitation,
    KeywordRow,
    NewVersion,
    OwnersChanged,
    OwnersInvited,
    ReverseDependencies,
    User,
    VersionRow,
)
from trustpub.registry.db.sqlite import SQLiteEngine
from trustpub.registry.db.webhook_keys import (
    KEY_FILE,
    WebhookKeyError,
    WebhookKeys,
    load_or_create,
)
from trustpub.registry.db.writes import Authorize, AuthorizePublish

T = TypeVar("T")

log = logging.getLogger("trustpub.registry")


class Engine(Protocol):
    """What ``RegistryDB`` needs of a database engine."""

    def open(self) -> None:
        """Connect, create on first use, migrate (``schema.migrate``), check writable."""
        ...

    def close(self) -> None: ...

    def check_writable(self) -> None: ...

    def run(self, fn: Callable[[queries.Connection], T]) -> T:
        """Run ``fn`` with a connection; engine failures raise ``StorageUnavailable``."""
        ...

    def transaction(self, conn: queries.Connection) -> AbstractContextManager[None]:
        """A write transaction that holds the writer lock from its start."""
        ...

    def read_now(self, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
        """The rows of a small read, read on the calling thread (the event loop's) at
        once, never waiting; None when the engine cannot (the caller then uses ``run``
        in a worker thread)."""
        ...

    async def read_async(self, sql: str, params: tuple[Any, ...]) -> list[Any] | None:
        """The rows of a small read made on the event loop without a thread, waiting
        for the server; None when the engine has no such read (``run`` then, in a
        worker thread). Failures raise ``StorageUnavailable``."""
        ...


class RegistryDB:
    """The metadata database. ``open()`` before use, ``close()`` after.

    Refusals raise ``DataConflict`` errors; outages ``StorageUnavailable`` (and
    ``StorageFull``), never a bare ``sqlite3`` error.
    """

    def __init__(
        self,
        location: str | Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        webhook_keys: WebhookKeys | Path | None = None,
    ) -> None:
        """``location``: a SQLite file path, or a ``postgresql://`` URL.

        ``webhook_keys`` encrypt the webhook secrets (``webhook_keys``): the keys, or
        a key file to load, created with a new key on first ``open()`` if missing.
        None: ``KEY_FILE`` next to a SQLite file; on PostgreSQL, none (creating a
        webhook, or opening a database with secrets to seal, is then refused)."""
        self._engine: Engine
        self._path: Path | None = None
        if isinstance(location, str) and is_postgresql_url(location):
            engine = PostgreSQLEngine(location, lock_timeout=busy_timeout)
            self.location = engine.location
            self._engine = engine
        else:
            self._path = Path(location).absolute()
            self.location = str(self._path)
            self._engine = SQLiteEngine(self._path, busy_timeout=busy_timeout)
        self._clock = clock
        if webhook_keys is None and self._path is not None:
            webhook_keys = self._path.parent / KEY_FILE
        self._key_source = webhook_keys
        self._keys: WebhookKeys | None = (
            webhook_keys if isinstance(webhook_keys, WebhookKeys) else None
        )

    @property
    def path(self) -> Path:
        """The SQLite file (``ValueError`` on PostgreSQL)."""
        if self._path is None:
            raise ValueError(f"{self.location} is not a file")
        return self._path

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Create (first use), migrate and check the database; ``StorageUnavailable``
        if it cannot be written, ``SchemaTooNew`` if a newer trustpub migrated it.
        Builds the index files that are missing (a database migrated from before they
        were kept) or of an older format (``index_files.build_missing``), and seals the
        webhook secrets stored in plain text before migration 9 (``seal_plain``)."""
        self._engine.open()
        self._engine.run(lambda c: index_files.build_missing(c, self._engine.transaction))
        self.seal_plain()

    @property
    def webhook_keys(self) -> WebhookKeys:
        """The keys of the webhook secrets, loaded (or created) at the first need;
        ``StorageUnavailable`` when none are configured or the file cannot be used."""
        if self._keys is None:
            source = self._key_source
            if not isinstance(source, Path):
                raise StorageUnavailable(
                    "no webhook secrets key is configured ([registry] "
                    "webhook_secrets_key_file, or $TRUSTPUB_WEBHOOK_SECRETS_KEYS)"
                )
            try:
                self._keys = load_or_create(source)
            except WebhookKeyError as exc:
                raise StorageUnavailable(f"webhook secrets key: {exc}") from None
        return self._keys

    def seal_plain(self) -> int:
        """Encrypt the webhook secrets still stored in plain text, in one transaction
        (``events.seal_plain_secrets``); returns how many. Logs an error naming the
        webhooks whose secret no configured key opens."""

        def seal(conn: queries.Connection) -> int:
            if events.plain_secrets(conn) == 0:
                return 0
            keys = self.webhook_keys
            with self._engine.transaction(conn):
                return events.seal_plain_secrets(conn, keys)

        sealed = self._engine.run(seal)
        if sealed:
            log.info("webhook secrets encrypted", extra={"fields": {"webhooks": sealed}})
        if self._engine.run(events.sealed_secrets):
            keys = self.webhook_keys
            foreign = self._engine.run(lambda c: events.foreign_secrets(c, keys))
            if foreign:
                # Deliveries to them fail (and say so) until the key is configured.
                log.error(
                    "webhook secrets encrypted with a key that is not configured",
                    extra={"fields": {"webhooks": foreign, "keys": list(keys.ids)}},
                )
        return sealed

    def reseal_webhook_secrets(self) -> tuple[int, list[int]]:
        """Encrypt every webhook secret again with the current key, in one transaction;
        how many were, and the ids of the webhooks no configured key opens."""
        keys = self.webhook_keys
        return self._write_plain(lambda c: events.reseal_secrets(c, keys))

    def webhook_secret(self, hook: Webhook) -> str:
        """The signing secret of ``hook``; ``SecretUnreadable`` (naming the webhook,
        never a key) when no configured key opens it."""
        return self.webhook_keys.open(hook.sealed_secret, hook.id, hook.crate_id)

    def close(self) -> None:
        self._engine.close()

    def check_writable(self) -> None:
        """Raise ``StorageUnavailable`` unless a write could be made now."""
        self._engine.check_writable()

    def now(self) -> int:
        return int(self._clock())

    def call(self, fn: Callable[[queries.Connection], T]) -> T:
        """Run ``fn`` with the engine's connection and guards (tests, maintenance)."""
        return self._engine.run(fn)

    def holding_write_lock(self, fn: Callable[[set[tuple[str, str]]], T]) -> T:
        """Run ``fn(published)`` while holding the writer lock, so no publish is in
        flight anywhere; ``published`` is every version as (crate name, number)."""

        def run(conn: queries.Connection) -> T:
            with self._engine.transaction(conn):
                return fn(queries.published_files(conn))

        return self._engine.run(run)

    # -- users and API tokens ------------------------------------------------------------

    def add_user(self, login: str, email: str | None = None) -> User:
        return self._write(lambda c, tx: writes.add_user(c, tx, login, self.now(), email))

    def set_email(self, login: str, email: str | None) -> User:
        return self._write(lambda c, tx: writes.set_email(c, tx, login, email))

    def users(self) -> list[User]:
        return self._engine.run(queries.users)

    def add_token(
        self,
        login: str,
        name: str,
        token_hash: bytes,
        scopes: Sequence[str],
        crates: Sequence[str],
        expires_at: int | None,
        actor_login: str | None = None,
        *,
        max_active: int | None = None,
    ) -> ApiToken:
        return self._write(
            lambda c, tx: writes.add_token(
                c,
                tx,
                login,
                name,
                token_hash,
                scopes,
                crates,
                expires_at,
                self.now(),
                actor_login,
                max_active,
            )
        )

    def tokens(self, login: str | None = None) -> list[ApiToken]:
        return self._engine.run(lambda c: queries.tokens(c, login))

    def revoke_token(
        self, token_id: int, actor_login: str | None = None, reason: str | None = None
    ) -> bool:
        return self._write(
            lambda c, tx: writes.revoke_token(c, tx, token_id, self.now(), actor_login, reason)
        )

    def revoke_token_by_hash(self, token_hash: bytes) -> ApiToken | None:
        """Revoke the token with this hash; it as it was before (None: unknown)."""
        return self._write(lambda c, tx: writes.revoke_token_by_hash(c, tx, token_hash, self.now()))

    def revoke_user_token(self, user_id: int, token_id: int, actor_login: str) -> bool:
        """Revoke ``token_id`` if it is an active token of ``user_id``."""
        return self._write(
            lambda c, tx: writes.revoke_token(
                c, tx, token_id, self.now(), actor_login, user_id=user_id
            )
        )

    def use_token(self, token_hash: bytes) -> ApiToken | None:
        """The active token with this hash (its last use recorded), else None."""
        return self._engine.run(lambda c: writes.use_token(c, token_hash, self.now()))

    # -- reading crates ------------------------------------------------------------------

    def crate(self, name: str) -> CrateRow | None:
        """The crate ``name`` denotes, up to case and ``-``/``_``."""
        return self._engine.run(lambda c: queries.crate(c, name))

    def crate_state(self, name: str) -> CrateState | None:
        """The crate ``name`` denotes and its owners, as stored now."""

        def read(conn: queries.Connection) -> CrateState | None:
            found = queries.crate(conn, name)
            return queries.state_of(conn, found) if found is not None else None

        return self._engine.run(read)

    def index_crate(self, lower_name: str) -> tuple[CrateRow, list[VersionRow]] | None:
        """The crate whose index file is ``lower_name`` (exact up to case), with its
        versions in publication order."""

        def read(conn: queries.Connection) -> tuple[CrateRow, list[VersionRow]] | None:
            found = queries.crate_by_index_name(conn, lower_name)
            return (found, queries.versions(conn, found.id)) if found is not None else None

        return self._engine.run(read)

    # -- index files kept ready (index_files) ----------------------------------------------

    def index_heads(self) -> tuple[int, list[index_files.IndexFile]]:
        """The index generation and every file's headers (no bytes)."""
        return self._engine.run(index_files.heads)

    def index_changes(self, since: int) -> tuple[int, list[index_files.IndexFile]]:
        """The index generation and the headers of the files built after ``since``."""
        return self._engine.run(lambda c: index_files.changed_since(c, since))

    def index_file(self, path: str) -> index_files.IndexFile | None:
        """The stored index file at ``path`` (lower case), bytes included."""
        return self._engine.run(lambda c: index_files.by_path(c, path))

    def index_files_of(self, crate_ids: list[int]) -> list[index_files.IndexFile]:
        return self._engine.run(lambda c: index_files.by_ids(c, crate_ids))

    def index_files_after(self, crate_id: int, limit: int) -> list[index_files.IndexFile]:
        """Up to ``limit`` stored files, bytes included, of the crates after ``crate_id``
        in id order (an export's full resync reads them batch by batch)."""
        return self._engine.run(lambda c: index_files.files_after(c, crate_id, limit))

    def index_generation(self) -> int:
        return self._engine.run(index_files.generation)

    def crate_with_versions(self, name: str) -> tuple[CrateRow, list[VersionRow]] | None:
        def read(conn: queries.Connection) -> tuple[CrateRow, list[VersionRow]] | None:
            found = queries.crate(conn, name)
            return (found, queries.versions(conn, found.id)) if found is not None else None

        return self._engine.run(read)

    def version(self, name: str, num: str) -> VersionRow | None:
        def read(conn: queries.Connection) -> VersionRow | None:
            found = queries.crate(conn, name)
            return queries.version(conn, found.id, num) if found is not None else None

        return self._engine.run(read)

    def dependencies(self, name: str, num: str) -> tuple[VersionRow, list[DependencyRow]]:
        """The version ``num`` of the crate ``name`` and its dependencies, in its index
        entry's order (``CrateNotFound``, ``VersionNotFound``)."""

        def read(conn: queries.Connection) -> tuple[VersionRow, list[DependencyRow]]:
            found = queries.crate(conn, name)
            if found is None:
                raise CrateNotFound(name)
            version = queries.version(conn, found.id, num)
            if version is None:
                raise VersionNotFound(found.name, num)
            return version, queries.dependencies(conn, version.id)

        return self._engine.run(read)

    def reverse_dependencies(self, name: str, limit: int, offset: int) -> ReverseDependencies:
        """The crates whose default version depends on the crate ``name``, one page
        (see ``queries.reverse_dependencies``; ``CrateNotFound``)."""

        def read(conn: queries.Connection) -> ReverseDependencies:
            found = queries.crate(conn, name)
            if found is None:
                raise CrateNotFound(name)
            return queries.reverse_dependencies(conn, found.id, limit, offset)

        return self._engine.run(read)

    def owners(self, name: str) -> list[User] | None:
        def read(conn: queries.Connection) -> list[User] | None:
            found = queries.crate(conn, name)
            return queries.owner_users(conn, found.id) if found is not None else None

        return self._engine.run(read)

    def search(
        self,
        query: str,
        limit: int,
        offset: int,
        *,
        sort: str = "relevance",
        categories: Sequence[str] | None = None,
        keyword: str | None = None,
        recent_since: str = "",
    ) -> tuple[list[CrateRow], int]:
        """See ``queries.search``."""
        return self._engine.run(
            lambda c: queries.search(
                c,
                query,
                limit,
                offset,
                sort=sort,
                categories=categories,
                keyword=keyword,
                recent_since=recent_since,
            )
        )

    # -- categories and keywords -----------------------------------------------------------

    def record_categories(self, slugs: Sequence[str]) -> int:
        """Note when each category slug was first offered; returns how many are new."""
        return self._write(lambda c, tx: writes.record_categories(c, tx, slugs, self.now()))

    def category_stats(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per slug: how many crates name it, and when it was first offered."""
        return self._engine.run(lambda c: (queries.category_counts(c), queries.category_times(c)))

    def keywords(self, by_crates: bool, limit: int, offset: int) -> tuple[list[KeywordRow], int]:
        return self._engine.run(lambda c: queries.keywords(c, by_crates, limit, offset))

    def keyword(self, key: str) -> KeywordRow | None:
        return self._engine.run(lambda c: queries.keyword(c, key))

    def crate_keywords(self, crate_id: int) -> list[KeywordRow]:
        return self._engine.run(lambda c: queries.crate_keywords(c, crate_id))

    def versions_of(self, crate_ids: Sequence[int]) -> dict[int, list[VersionRow]]:
        return self._engine.run(lambda c: {cid: queries.versions(c, cid) for cid in crate_ids})

    def index_entries(self, name: str) -> list[dict[str, object]]:
        """The index entries of every version of the crate ``name`` denotes."""
        return self._engine.run(lambda c: queries.index_entries(c, name))

    def invitations_for(self, user_id: int) -> list[Invitation]:
        """The user's pending, unexpired owner invitations."""
        return self._engine.run(lambda c: queries.invitations_for(c, user_id, self.now()))

    # -- download counts (db.downloads) ---------------------------------------------------

    def add_downloads(self, counts: downloads.Counts) -> int:
        """Add a batch of counts ((version id, day) -> n) in ONE write transaction;
        returns the downloads recorded (versions deleted since are skipped)."""
        return self._write_plain(lambda c: downloads.add(c, counts))

    def recent_downloads(self, crate_ids: Sequence[int], since: str) -> dict[int, int]:
        """Each crate's downloads on day ``since`` ('YYYY-MM-DD') and later."""
        return self._engine.run(lambda c: downloads.recent(c, crate_ids, since))

    def version_downloads(
        self, version_ids: Sequence[int], since: str, until: str
    ) -> list[downloads.DayCount]:
        """Daily counts of these versions, days ``since`` to ``until`` included."""
        return self._engine.run(lambda c: downloads.per_version(c, version_ids, since, until))

    def downloads_by_day(
        self, version_ids: Sequence[int], since: str, until: str
    ) -> list[downloads.DayCount]:
        """The daily counts of these versions added up by day."""
        return self._engine.run(lambda c: downloads.per_day(c, version_ids, since, until))

    # -- changes (writes.py: one transaction each, ``authorize`` inside it) ---------------

    def publish(
        self,
        new: NewVersion,
        authorize: AuthorizePublish,
        place_file: Callable[[str], None],
        remove_file: Callable[[str], None],
    ) -> VersionRow:
        """Record ``new`` and place its file (``writes.publish``). When the COMMIT fails
        its outcome is read back on a fresh connection before the file is touched:

        - recorded, same checksum: the publish succeeded; its row is returned;
        - recorded with other bytes (another publish won the number): ``VersionExists``,
          the file (the other publish's) kept;
        - not recorded: the file is removed and the engine's error raised;
        - cannot be read (the database still down): the file is KEPT, the case logged
          for operators, and ``PublishOutcomeUnknown`` raised. An orphan file is
          harmless (swept at the next start); a missing one would be lost for good.
        """
        try:
            return self._write(
                lambda c, tx: writes.publish(
                    c, tx, new, authorize, place_file, remove_file, self.now()
                )
            )
        except CommitFailed as failed:
            return self._settle_publish(new, failed, remove_file)

    def _settle_publish(
        self, new: NewVersion, failed: CommitFailed, remove_file: Callable[[str], None]
    ) -> VersionRow:
        removed = False

        def remove(crate_name: str) -> None:
            nonlocal removed
            remove_file(crate_name)
            removed = True

        def settle(conn: queries.Connection) -> VersionRow | None:
            with self._engine.transaction(conn):
                return writes.settle_publish(conn, new, remove)

        fields: dict[str, object] = {"crate": new.crate, "version": new.num}
        try:
            recorded = self._engine.run(settle)
        except StorageUnavailable as exc:
            if removed:  # read back as not recorded; only the read's own COMMIT failed
                raise failed.failure from failed
            log.error(
                "publish outcome unknown: its COMMIT failed and the database cannot be read"
                " back; the .crate file is kept (run `trustpub registry files check`)",
                extra={"fields": {**fields, "commit": failed.reason, "read_back": exc.reason}},
            )
            raise PublishOutcomeUnknown(new.crate, new.num, exc.reason) from failed
        if recorded is None:
            log.warning(
                "publish not recorded: its COMMIT failed; the .crate file was removed",
                extra={"fields": {**fields, "commit": failed.reason}},
            )
            raise failed.failure from failed
        if recorded.cksum != new.cksum:
            raise VersionExists(recorded.crate_name, recorded.num) from failed
        log.warning(
            "publish recorded although its COMMIT reported a failure (read back)",
            extra={"fields": {**fields, "commit": failed.reason}},
        )
        return recorded

    def set_yanked(self, name: str, num: str, yanked: bool, authorize: Authorize) -> None:
        self._write(
            lambda c, tx: writes.set_yanked(c, tx, name, num, yanked, authorize, self.now())
        )

    def change_owners(
        self,
        name: str,
        logins: Sequence[str],
        add: bool,
        authorize: Authorize,
        actor_login: str | None = None,
    ) -> OwnersChanged:
        return self._write(
            lambda c, tx: writes.change_owners(
                c, tx, name, logins, add, authorize, self.now(), actor_login
            )
        )

    def set_trustpub_only(
        self, name: str, value: bool, authorize: Authorize, actor_login: str | None = None
    ) -> CrateRow:
        return self._write(
            lambda c, tx: writes.set_trustpub_only(
                c, tx, name, value, authorize, self.now(), actor_login
            )
        )

    # -- audit trail, webhooks, notification outbox (events.py) ---------------------------

    def audit(
        self, crate_id: int | None, limit: int, offset: int
    ) -> tuple[list[tuple[AuditEvent, list[Delivery]]], int]:
        """Events newest first (one crate's, or all) with their deliveries, and the total."""

        def read(conn: queries.Connection) -> tuple[list[tuple[AuditEvent, list[Delivery]]], int]:
            found, total = events.events(conn, crate_id, limit, offset)
            sent = events.deliveries(conn, [e.id for e in found])
            return [(e, sent[e.id]) for e in found], total

        return self._engine.run(read)

    def webhooks(self, crate_id: int) -> list[tuple[Webhook, Delivery | None]]:
        """A crate's subscriptions, each with its latest delivery."""

        def read(conn: queries.Connection) -> list[tuple[Webhook, Delivery | None]]:
            found = events.webhooks(conn, crate_id)
            latest = events.latest_deliveries(conn, [w.id for w in found])
            return [(w, latest.get(w.id)) for w in found]

        return self._engine.run(read)

    def add_webhook(
        self, name: str, url: str, secret: str, authorize: Authorize, actor_login: str
    ) -> Webhook:
        keys = self.webhook_keys
        return self._write(
            lambda c, tx: writes.add_webhook(
                c, tx, name, url, secret, authorize, actor_login, self.now(), keys
            )
        )

    def delete_webhook(
        self, name: str, webhook_id: int, authorize: Authorize, actor_login: str
    ) -> None:
        self._write(
            lambda c, tx: writes.delete_webhook(
                c, tx, name, webhook_id, authorize, actor_login, self.now()
            )
        )

    def outbox_due(self, lease: int, limit: int) -> list[int]:
        return self._engine.run(lambda c: events.due(c, self.now(), lease, limit))

    def outbox_claim(
        self, row_id: int, worker: str, lease: int
    ) -> tuple[Delivery, AuditEvent, Webhook | None] | None:
        """Claim one outbox row (see ``events.claim``); with its event and webhook."""

        def claim(conn: queries.Connection) -> tuple[Delivery, AuditEvent, Webhook | None] | None:
            with self._engine.transaction(conn):
                taken = events.claim(conn, row_id, worker, self.now(), lease)
                if taken is None:
                    return None
                hook = events.webhook(conn, taken.webhook_id) if taken.webhook_id else None
                return taken, events.event_by_id(conn, taken.event_id), hook

        return self._engine.run(claim)

    def outbox_delivered(self, row_id: int, worker: str) -> bool:
        return self._write_plain(lambda c: events.finish(c, row_id, worker, self.now()))

    def outbox_failed(
        self, row_id: int, worker: str, error: str, next_attempt_at: int | None
    ) -> bool:
        return self._write_plain(lambda c: events.retry(c, row_id, worker, error, next_attempt_at))

    def _write_plain(self, fn: Callable[[queries.Connection], T]) -> T:
        def run(conn: queries.Connection) -> T:
            with self._engine.transaction(conn):
                return fn(conn)

        return self._engine.run(run)

    def invite_owners(
        self,
        name: str,
        logins: Sequence[str],
        authorize: Authorize,
        inviter_id: int | None,
        expires_in: int,
    ) -> OwnersInvited:
        now = self.now()
        return self._write(
            lambda c, tx: writes.invite_owners(
                c, tx, name, logins, authorize, inviter_id, now, now + expires_in
            )
        )

    def respond_to_invitation(
        self,
        user_id: int,
        crate_id: int,
        accept: bool,
        authorize: Callable[[Invitation], None],
    ) -> Invitation:
        return self._write(
            lambda c, tx: writes.respond_to_invitation(
                c, tx, user_id, crate_id, accept, authorize, self.now()
            )
        )

    # -- owner-managed Trusted Publishing configs (db.configs) ---------------------------

    def config_generation(self) -> int:
        """A number that changes with every change to the configs."""
        return self._engine.run(configs.generation)

    def config_generation_now(self) -> int | None:
        """``config_generation`` read at once on this thread, or None when it cannot be
        (then ``config_generation`` in a worker thread)."""
        rows = self._engine.read_now(configs.GENERATION, ())
        if rows is None:
            return None
        return int(rows[0][0]) if rows else 0

    async def config_generation_async(self) -> int | None:
        """``config_generation`` read on the event loop without a thread, or None when
        the engine cannot (then ``config_generation`` in a worker thread)."""
        rows = await self._engine.read_async(configs.GENERATION, ())
        if rows is None:
            return None
        return int(rows[0][0]) if rows else 0

    def live_configs(self) -> tuple[int, list[configs.ConfigRow]]:
        """The generation and every config in force, read together."""
        now = self.now()
        return self._engine.run(lambda c: (configs.generation(c), configs.live(c, now)))

    def config_changes(self, since: int) -> tuple[int, dict[int, configs.ConfigRow | None] | None]:
        """The configs changed after generation ``since`` (see ``configs.changes_since``)."""
        now = self.now()
        return self._engine.run(lambda c: configs.changes_since(c, since, now))

    def configs_for(
        self, provider: str | None, name: str, *, pending: bool = False
    ) -> list[configs.ConfigRow]:
        now = self.now()
        return self._engine.run(
            lambda c: configs.for_crate(c, provider, name, now, pending=pending)
        )

    def config(self, config_id: int) -> configs.ConfigRow | None:
        return self._engine.run(lambda c: configs.by_id(c, config_id))

    def create_config(
        self,
        new: configs.NewConfig,
        user_id: int,
        check: Callable[[queries.Connection], int | None],
        *,
        pending_ttl: int,
        actor_login: str | None = None,
    ) -> configs.ConfigRow:
        return self._write(
            lambda c, tx: configs.create(
                c,
                tx,
                new,
                user_id,
                self.now(),
                check=check,
                pending_ttl=pending_ttl,
                actor_login=actor_login,
            )
        )

    def delete_config(
        self,
        config_id: int,
        check: Callable[[queries.Connection, configs.ConfigRow | None], None],
        actor_login: str | None = None,
    ) -> configs.ConfigRow:
        return self._write(
            lambda c, tx: configs.delete(c, tx, config_id, check, self.now(), actor_login)
        )

    def pin_config_namespace(
        self, config_ids: Sequence[int], namespace_id: str
    ) -> list[configs.ConfigRow]:
        return self._write(lambda c, tx: configs.pin_namespace(c, tx, config_ids, namespace_id))

    def _write(self, fn: Callable[[queries.Connection, writes.Transaction], T]) -> T:
        return self._engine.run(lambda c: fn(c, self._engine.transaction))
