"""A registry on a temporary directory behind starlette's TestClient, with a fake
trustpub authority whose tokens the test grants directly.

Every test that uses the registry runs twice: on the SQLite default and on
PostgreSQL (tests/pg.py). A test about one engine's own behaviour asks for
``sqlite_only`` (it then runs once)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.pg import pg_database, pg_session_database  # noqa: F401 (fixtures)
from tests.registry.helpers import body_for
from tests.registry.s3server import S3Server, run_moto_server
from trustpub.grants import Operation, Provenance
from trustpub.registry import Limits, Registry, TrustedToken, create_registry_app
from trustpub.registry.actors import SCOPES
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.registry.storage import StorageSettings
from trustpub.tokens.format import generate_token
from trustpub.tokens.record import TokenRecord

PUBLIC_URL = "http://registry.test"

PROVENANCE = Provenance(
    issuer="https://token.actions.githubusercontent.com",
    provider="github",
    repository="octo-org/octo-lib",
    repository_id="632596897",
    owner_id="131804563",
    workflow_ref="octo-org/octo-lib/.github/workflows/release.yml@refs/tags/v1.0.0",
    ref="refs/tags/v1.0.0",
    sha="8c13a5f0d1c8a9e6b1f2c3d4e5f60718293a4b5c",
    run_id="21561244697",
    run_attempt="1",
)


class FakeAuthority:
    def __init__(self) -> None:
        self.tokens: dict[str, TrustedToken] = {}

    def grant(
        self,
        crates: Mapping[str, set[Operation]],
        owners: Mapping[str, tuple[str, ...]] | None = None,
    ) -> str:
        token = generate_token()
        now = int(time.time())
        record = TokenRecord(
            crates=MappingProxyType({k: frozenset(v) for k, v in crates.items()}),
            issued_at=now,
            expires_at=now + 1800,
            provenance=PROVENANCE,
            policies=("release.toml#octo-lib",),
            new_crate_owners=MappingProxyType(dict(owners or {})),
        )
        # As the real authorities do: the owners are the ones the record carries.
        self.tokens[token] = TrustedToken(record, record.new_crate_owners)
        return token

    async def introspect(self, token: str) -> TrustedToken | None:
        return self.tokens.get(token)


@dataclass
class RegistryEnv:
    client: TestClient
    registry: Registry
    authority: FakeAuthority
    directory: Path
    logins: dict[str, int] = field(default_factory=dict)

    def user(self, login: str) -> None:
        self.registry.db.add_user(login)

    def token(
        self, login: str, scopes: tuple[str, ...] = SCOPES, crates: tuple[str, ...] = ()
    ) -> str:
        token = generate_user_token()
        self.registry.db.add_token(login, "test", user_token_hash(token), scopes, crates, None)
        return token

    def publish(self, token: str | None, name: str, vers: str, **fields: Any) -> httpx.Response:
        return self.put_body(token, body_for(name, vers, **fields))

    def put_body(self, token: str | None, body: bytes) -> httpx.Response:
        headers = {"Authorization": token} if token is not None else {}
        response: httpx.Response = self.client.put(
            "/api/v1/crates/new", content=body, headers=headers
        )
        return response

    def index(self, name: str, **headers: str) -> httpx.Response:
        from trustpub.registry.names import index_path

        response: httpx.Response = self.client.get(f"/index/{index_path(name)}", headers=headers)
        return response

    def index_lines(self, name: str) -> list[dict[str, Any]]:
        import json

        response = self.index(name)
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines()]

    def invitations(self, token: str) -> list[dict[str, Any]]:
        response = self.client.get(
            "/api/v1/me/crate_owner_invitations", headers={"Authorization": token}
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["crate_owner_invitations"]
        return found

    def answer_invitation(self, token: str, crate: str, *, accept: bool = True) -> httpx.Response:
        """Answer the invitation to own ``crate`` that ``token``'s user holds."""
        (crate_id,) = [i["crate_id"] for i in self.invitations(token) if i["crate_name"] == crate]
        response: httpx.Response = self.client.put(
            f"/api/v1/me/crate_owner_invitations/{crate_id}",
            json={"crate_owner_invite": {"crate_id": crate_id, "accepted": accept}},
            headers={"Authorization": token},
        )
        return response

    def crate_files(self) -> list[str]:
        """The .crate files in the store (directory or bucket), by file name."""
        return sorted(key.rsplit("/", 1)[-1] for key in self.registry.files.list_keys())

    def crate_bytes(self, name: str, vers: str) -> bytes:
        stored = self.registry.files.get(name, vers)
        assert stored is not None
        return b"".join(stored.chunks)

    def staged_files(self) -> list[Path]:
        """Uploads staged on disk (the S3 backend stages none: an empty list)."""
        tmp = self.directory / "tmp"
        return list(tmp.iterdir()) if tmp.exists() else []


def detail(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"errors"}, body
    text: str = body["errors"][0]["detail"]
    return text


@pytest.fixture
def limits() -> Limits:
    return Limits()


# The backends a registry test runs on: each database engine with the default
# directory store. Tests of what reaches the crate files (publish, download, uploads)
# also run on the S3 emulator with the SQLite default (``with_s3``): the storage and
# the engine are independent, and their full product would only repeat the same paths.
BACKENDS = ("sqlite+file", "postgresql+file")
ENGINES = ("sqlite", "postgresql")

#: For a module whose tests reach the crate file store: every backend, S3 included.
with_s3 = pytest.mark.with_s3


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that asks for a ``backend`` on every backend (S3 too where marked
    ``with_s3``), unless it names its backends itself (``file_storage_only``)."""
    if "backend" not in metafunc.fixturenames:
        return
    if any(
        m.args and m.args[0] == "backend" for m in metafunc.definition.iter_markers("parametrize")
    ):
        return
    backends = [*BACKENDS]
    if metafunc.definition.get_closest_marker("with_s3") is not None:
        backends.append("sqlite+s3")
    metafunc.parametrize("backend", backends, indirect=True)


#: For tests of the directory backend itself (file modes, a vanished data directory).
file_storage_only = pytest.mark.parametrize(
    "backend", ["sqlite+file", "postgresql+file"], indirect=True
)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``ENGINE+STORAGE``: where this registry test keeps its data."""
    name: str = request.param
    return name


@pytest.fixture
def engine(backend: str) -> str:
    """The registry database engine this test runs on."""
    return backend.partition("+")[0]


@pytest.fixture
def sqlite_only(engine: str) -> None:
    """The test is about the SQLite engine (its file, its guards): skipped on the other,
    where a test of its own covers the same ground."""
    if engine != "sqlite":
        pytest.skip("about the SQLite engine")


@pytest.fixture
def database(engine: str, request: pytest.FixtureRequest) -> str | None:
    """The ``[registry] database`` setting: None (the SQLite file) or a PostgreSQL URL
    whose tables are empty."""
    if engine == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server, a real HTTP server process on loopback (an emulator)."""
    yield from run_moto_server()


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest) -> StorageSettings | None:
    """The crate file store: the default directory under the data directory, or a
    fresh bucket of the S3 emulator."""
    if backend.partition("+")[2] == "file":
        return None
    server: S3Server = request.getfixturevalue("s3_server")
    return server.storage()


@pytest.fixture
def env(
    tmp_path: Path, limits: Limits, database: str | None, storage: StorageSettings | None
) -> Iterator[RegistryEnv]:
    authority = FakeAuthority()
    app = create_registry_app(
        tmp_path,
        PUBLIC_URL,
        authority=authority,
        limits=limits,
        database=database,
        storage=storage,
    )
    with TestClient(app) as client:
        registry: Registry = app.state.registry
        yield RegistryEnv(client, registry, authority, tmp_path)
