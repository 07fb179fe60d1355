"""Dependencies over the web API (crates.io's shapes): a version's dependencies, a
crate's reverse dependencies with paging, and the ``dependencies`` table they read,
backfilled by migration 5 from the index entries of a database created before it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.pg import create_database, drop_database
from tests.registry.conftest import PUBLIC_URL, RegistryEnv, detail
from tests.registry.helpers import body_for, dep, metadata
from trustpub.registry import create_registry_app
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.registry.db import SCHEMA_VERSION
from trustpub.registry.db.postgresql import PostgreSQLEngine
from trustpub.registry.db.queries import Connection
from trustpub.registry.db.schema import SQLITE_MIGRATIONS
from trustpub.registry.db.sqlite import SQLiteEngine
from trustpub.registry.names import canonical_name
from trustpub.registry.publish import parse_metadata

# crates.io's EncodableDependency, key by key, with the JSON type of each value.
DEPENDENCY_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": int,
    "version_id": int,
    "crate_id": str,
    "req": str,
    "optional": bool,
    "default_features": bool,
    "features": list,
    "target": (str, type(None)),
    "kind": str,
    "downloads": int,
}

# What `app 1.0.0` depends on: every field cargo sends, a rename, every kind.
APP_DEPS = [
    dep("base", "^1.0", features=["extra"], default_features=False),
    dep("other", "=0.2.0", explicit_name_in_toml="renamed"),
    dep("tester", "^3", kind="dev"),
    dep("base", "^1", kind="build", target="cfg(unix)"),
    dep("other", "^0.2", optional=True),
    dep("base", "^1", registry="https://elsewhere.example/index/"),
]


def get(env: RegistryEnv, path: str) -> Any:
    return env.client.get(path)


def check_shape(found: dict[str, Any]) -> None:
    assert set(found) == set(DEPENDENCY_KEYS), found
    for key, kind in DEPENDENCY_KEYS.items():
        assert isinstance(found[key], kind), (key, found[key])
    assert all(isinstance(f, str) for f in found["features"])


@pytest.fixture
def alice(env: RegistryEnv) -> str:
    env.user("alice")
    return env.token("alice")


def publish(env: RegistryEnv, token: str, name: str, vers: str, deps: list[Any]) -> None:
    response = env.publish(token, name, vers, deps=deps)
    assert response.status_code == 200, response.text


# -- a version's dependencies ---------------------------------------------------------


def test_a_versions_dependencies_have_crates_io_shape_and_order(
    env: RegistryEnv, alice: str
) -> None:
    for name in ("base", "other", "tester"):
        publish(env, alice, name, "1.0.0" if name != "tester" else "3.0.0", [])
    publish(env, alice, "other", "0.2.0", [])
    publish(env, alice, "app", "1.0.0", APP_DEPS)
    version_id = get(env, "/api/v1/crates/app/1.0.0").json()["version"]["id"]

    response = get(env, "/api/v1/crates/app/1.0.0/dependencies")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"dependencies"}
    found = body["dependencies"]
    for d in found:
        check_shape(d)
    assert {d["version_id"] for d in found} == {version_id}
    assert len({d["id"] for d in found}) == len(APP_DEPS)
    # Required ones first, then by crate; a renamed dependency under the crate it
    # names (crate_id is never the manifest's local name).
    rows = [
        (d["crate_id"], d["req"], d["optional"], d["default_features"], d["features"],
         d["target"], d["kind"], d["downloads"])
        for d in found
    ]  # fmt: skip
    assert rows == [
        ("base", "^1.0", False, False, ["extra"], None, "normal", 0),
        ("base", "^1", False, True, [], "cfg(unix)", "build", 0),
        ("base", "^1", False, True, [], None, "normal", 0),  # the other registry's
        ("other", "=0.2.0", False, True, [], None, "normal", 0),  # as `renamed`
        ("tester", "^3", False, True, [], None, "dev", 0),
        ("other", "^0.2", True, True, [], None, "normal", 0),
    ]


def test_dependencies_of_a_yanked_version_are_still_listed(env: RegistryEnv, alice: str) -> None:
    publish(env, alice, "base", "1.0.0", [])
    publish(env, alice, "app", "1.0.0", [dep("base")])
    headers = {"Authorization": alice}
    assert env.client.delete("/api/v1/crates/app/1.0.0/yank", headers=headers).status_code == 200
    found = get(env, "/api/v1/crates/app/1.0.0/dependencies").json()["dependencies"]
    assert [d["crate_id"] for d in found] == ["base"]
    assert get(env, "/api/v1/crates/base/1.0.0/dependencies").json() == {"dependencies": []}


def test_an_unknown_crate_or_version_is_404(env: RegistryEnv, alice: str) -> None:
    publish(env, alice, "base", "1.0.0", [])
    response = get(env, "/api/v1/crates/nope/1.0.0/dependencies")
    assert response.status_code == 404
    assert detail(response) == "crate `nope` does not exist"
    response = get(env, "/api/v1/crates/base/9.9.9/dependencies")
    assert response.status_code == 404
    assert detail(response) == "crate `base` does not have a version `9.9.9`"
    response = get(env, "/api/v1/crates/nope/reverse_dependencies")
    assert response.status_code == 404
    assert detail(response) == "crate `nope` does not exist"


# -- reverse dependencies ----------------------------------------------------------------


def test_reverse_dependencies_list_crates_whose_default_version_depends(
    env: RegistryEnv, alice: str
) -> None:
    publish(env, alice, "base", "1.0.0", [])
    publish(env, alice, "base", "2.0.0", [])
    # Counted: a normal dependency, a dev one, a renamed one, a crate whose newest
    # version is yanked but whose default (the highest left) depends.
    publish(env, alice, "user-a", "0.1.0", [dep("base", "^2", features=["x"])])
    publish(env, alice, "user-b", "0.1.0", [dep("base", "^1", kind="dev")])
    publish(env, alice, "user-c", "0.1.0", [dep("base", explicit_name_in_toml="b2")])
    publish(env, alice, "user-d", "1.0.0", [dep("base")])
    publish(env, alice, "user-d", "2.0.0", [])
    # Not counted: only an older version depends; only a pre-release newer than the
    # default depends; every version yanked; another registry's `base`.
    publish(env, alice, "old-e", "1.0.0", [dep("base")])
    publish(env, alice, "old-e", "1.1.0", [])
    publish(env, alice, "pre-f", "1.0.0", [])
    publish(env, alice, "pre-f", "2.0.0-beta.1", [dep("base")])
    publish(env, alice, "yanked-g", "1.0.0", [dep("base")])
    publish(env, alice, "elsewhere-h", "1.0.0", [dep("base", registry="https://x.example/")])
    headers = {"Authorization": alice}
    for path in ("user-d/2.0.0", "yanked-g/1.0.0"):
        response = env.client.delete(f"/api/v1/crates/{path}/yank", headers=headers)
        assert response.status_code == 200

    response = get(env, "/api/v1/crates/base/reverse_dependencies")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"dependencies", "versions", "meta"}
    assert body["meta"] == {"total": 4}
    for d in body["dependencies"]:
        check_shape(d)
        assert d["crate_id"] == "base"
    versions = body["versions"]
    assert [(v["crate"], v["num"]) for v in versions] == [
        ("user-a", "0.1.0"),
        ("user-b", "0.1.0"),
        ("user-c", "0.1.0"),
        ("user-d", "1.0.0"),
    ]
    assert [d["version_id"] for d in body["dependencies"]] == [v["id"] for v in versions]
    assert [(d["req"], d["kind"], d["features"]) for d in body["dependencies"]] == [
        ("^2", "normal", ["x"]),
        ("^1", "dev", []),
        ("^1", "normal", []),
        ("^1", "normal", []),
    ]
    # The versions are the version endpoint's objects.
    assert versions[0] == get(env, "/api/v1/crates/user-a/0.1.0").json()["version"]

    # A pre-release counts when the crate has nothing else.
    publish(env, alice, "pre-only", "0.1.0-alpha", [dep("base")])
    names = [
        v["crate"] for v in get(env, "/api/v1/crates/base/reverse_dependencies").json()["versions"]
    ]
    assert "pre-only" in names


def test_a_version_depending_twice_is_listed_once_by_its_first_dependency(
    env: RegistryEnv, alice: str
) -> None:
    publish(env, alice, "base", "1.0.0", [])
    publish(env, alice, "twice", "1.0.0", [dep("base", kind="dev"), dep("base", "^1.0")])
    body = get(env, "/api/v1/crates/base/reverse_dependencies").json()
    assert body["meta"] == {"total": 1}
    assert [(d["kind"], d["req"]) for d in body["dependencies"]] == [("dev", "^1")]


def test_reverse_dependencies_are_paged(env: RegistryEnv, alice: str) -> None:
    publish(env, alice, "base", "1.0.0", [])
    users = ["u1", "u2", "u3", "u4", "u5"]
    for name in reversed(users):
        publish(env, alice, name, "1.0.0", [dep("base")])
    seen: list[str] = []
    for page in (1, 2, 3):
        body = get(env, f"/api/v1/crates/base/reverse_dependencies?page={page}&per_page=2").json()
        assert body["meta"] == {"total": 5}
        assert len(body["dependencies"]) == len(body["versions"])
        seen += [v["crate"] for v in body["versions"]]
    assert seen == users
    past = get(env, "/api/v1/crates/base/reverse_dependencies?page=4&per_page=2").json()
    assert past == {"dependencies": [], "versions": [], "meta": {"total": 5}}
    default = get(env, "/api/v1/crates/base/reverse_dependencies").json()
    assert len(default["versions"]) == 5  # 10 a page by default, as crates.io
    for query in ("per_page=0", "per_page=101", "page=0", "page=x"):
        response = get(env, f"/api/v1/crates/base/reverse_dependencies?{query}")
        assert response.status_code == 400, query


def test_reverse_dependencies_find_the_crate_up_to_case_and_dashes(
    env: RegistryEnv, alice: str
) -> None:
    publish(env, alice, "My-Base", "1.0.0", [])
    publish(env, alice, "user", "1.0.0", [dep("My-Base")])
    for spelled in ("My-Base", "my_base", "MY-BASE"):
        body = get(env, f"/api/v1/crates/{spelled}/reverse_dependencies").json()
        assert [d["crate_id"] for d in body["dependencies"]] == ["My-Base"], spelled
    assert get(env, "/api/v1/crates/user/reverse_dependencies").json()["meta"] == {"total": 0}


# -- migration 5: the table backfilled from the stored index entries -----------------------


def _entry(name: str, vers: str, deps: list[Any]) -> dict[str, Any]:
    """The index entry a publish stores (the parser's own), for a database written by
    the code of migration 4."""
    cksum = hashlib.sha256(f"{name}-{vers}".encode()).hexdigest()
    return parse_metadata(metadata(name, vers, deps=deps)).index_entry(cksum)


OLD_VERSIONS = [
    ("Old-Base", "1.0.0", []),
    ("old-user", "0.1.0", [dep("Old-Base", "^1", features=["f"], default_features=False)]),
    ("old-dev", "0.1.0", [dep("tool", kind="dev"), dep("Old-Base", kind="dev", optional=True)]),
    ("old-renamed", "0.1.0", [dep("Old-Base", "=1.0.0", explicit_name_in_toml="ob")]),
    ("tool", "1.0.0", [dep("Old-Base", kind="build", target="cfg(windows)")]),
    ("old-none", "0.1.0", []),
]


def _write_at_migration_4(conn: Connection, tx: Any) -> None:
    with tx(conn):
        (alice,) = conn.execute(
            "INSERT INTO users (login, created_at) VALUES ('alice', 1) RETURNING id"
        ).fetchone()
        for name, vers, deps in OLD_VERSIONS:
            (crate_id,) = conn.execute(
                "INSERT INTO crates (name, canonical, created_at, updated_at,"
                " index_updated_at) VALUES (?, ?, 1, 1, 1) RETURNING id",
                (name, canonical_name(name)),
            ).fetchone()
            conn.execute(
                "INSERT INTO owners (crate_id, user_id, created_at) VALUES (?, ?, 1)",
                (crate_id, alice),
            )
            entry = _entry(name, vers, deps)
            conn.execute(
                "INSERT INTO versions (crate_id, num, num_no_build, entry, cksum, size,"
                " description, license, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 1, 'old', 'MIT', 1, 1)",
                (crate_id, vers, vers, json.dumps(entry), entry["cksum"]),
            )


def test_a_database_from_before_migration_5_answers_its_dependencies(
    engine: str, tmp_path: Path
) -> None:
    at_4 = SQLITE_MIGRATIONS[:4]
    url = create_database() if engine == "postgresql" else None
    try:
        old: SQLiteEngine | PostgreSQLEngine
        if url is None:
            old = SQLiteEngine(tmp_path / "registry.db", migrations=at_4)
        else:
            old = PostgreSQLEngine(url, migrations=at_4)
        old.open()
        old.run(lambda conn: _write_at_migration_4(conn, old.transaction))
        old.close()
        assert SCHEMA_VERSION >= 5

        app = create_registry_app(tmp_path, PUBLIC_URL, database=url)
        with TestClient(app) as client:
            body = client.get("/api/v1/crates/old_base/reverse_dependencies").json()
            assert body["meta"] == {"total": 4}
            assert [(v["crate"], v["num"]) for v in body["versions"]] == [
                ("old-dev", "0.1.0"),
                ("old-renamed", "0.1.0"),
                ("old-user", "0.1.0"),
                ("tool", "1.0.0"),
            ]
            assert {d["crate_id"] for d in body["dependencies"]} == {"Old-Base"}
            for d in body["dependencies"]:
                check_shape(d)
            found = client.get("/api/v1/crates/old-dev/0.1.0/dependencies").json()
            assert [
                (d["crate_id"], d["kind"], d["optional"], d["req"]) for d in found["dependencies"]
            ] == [("tool", "dev", False, "^1"), ("Old-Base", "dev", True, "^1")]
            found = client.get("/api/v1/crates/old-user/0.1.0/dependencies").json()
            (d,) = found["dependencies"]
            assert (d["features"], d["default_features"], d["target"]) == (["f"], False, None)
            found = client.get("/api/v1/crates/tool/1.0.0/dependencies").json()
            (d,) = found["dependencies"]
            assert (d["kind"], d["target"]) == ("build", "cfg(windows)")
            found = client.get("/api/v1/crates/old-renamed/0.1.0/dependencies").json()
            (d,) = found["dependencies"]
            assert (d["crate_id"], d["req"]) == ("Old-Base", "=1.0.0")

            # The rows are the ones a publish writes: a new version joins them.
            token = generate_user_token()
            app.state.registry.db.add_token(
                "alice", "t", user_token_hash(token), ["publish-update"], [], None
            )
            response = client.put(
                "/api/v1/crates/new",
                content=body_for("old-none", "0.2.0", deps=[dep("Old-Base")]),
                headers={"Authorization": token},
            )
            assert response.status_code == 200, response.text
            body = client.get("/api/v1/crates/Old-Base/reverse_dependencies").json()
            assert body["meta"] == {"total": 5}
    finally:
        if url is not None:
            drop_database(url)
