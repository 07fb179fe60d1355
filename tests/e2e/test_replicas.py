"""Several ``trustpub serve`` replicas on one PostgreSQL database (registry data and
tokens) and one shared data directory, as a registry that outgrew one machine runs.

What the replicas must agree on: a publish through one is in the index of the others
within ``MAX_STALENESS`` (1 s; a new crate at once); concurrent publishes of different
versions across replicas are all kept, of the same version exactly one; one JWT yields
one token; a replica killed mid-stream loses no acknowledged publish; real cargo
publishes through one replica, yanks through another and resolves, downloads and
builds through a third.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.live import LiveService, registry_cli, run_service
from tests.pg import create_database, drop_database
from tests.registry.helpers import body_for, make_crate, metadata, publish_body
from tests.registry.test_cargo_e2e import POLICIES, Cargo, make_package
from trustpub.devissuer import DevIssuer, serve_in_thread
from trustpub.registry.index import MAX_STALENESS

pytestmark = pytest.mark.slow

REPLICAS = 3


@pytest.fixture
def issuer() -> Iterator[DevIssuer]:
    with serve_in_thread(provider="github") as running:
        yield running


@pytest.fixture
def replicas(tmp_path: Path, issuer: DevIssuer) -> Iterator[list[LiveService]]:
    url = create_database()
    shared = tmp_path / "shared-data"
    try:
        with ExitStack() as stack:
            started = [
                stack.enter_context(
                    run_service(
                        tmp_path,
                        name=f"replica-{i}",
                        issuers=[issuer.trustpub_issuer()],
                        policies=POLICIES.format(issuer=issuer.url),
                        store_url=url,
                        extra_config=f'[registry]\ndatabase = "{url}"\n',
                        env={"TRUSTPUB_DATA_DIR": str(shared)},
                    )
                )
                for i in range(REPLICAS)
            ]
            yield started
    finally:
        drop_database(url)


def publish(
    svc: LiveService, token: str, name: str, vers: str, body: bytes | None = None
) -> httpx.Response:
    return httpx.put(
        f"{svc.url}/api/v1/crates/new",
        content=body if body is not None else body_for(name, vers),
        headers={"Authorization": token},
        timeout=30,
    )


def index_versions(svc: LiveService, path: str) -> list[str]:
    response = httpx.get(f"{svc.url}/index/{path}", timeout=10)
    assert response.status_code == 200, response.text
    return [json.loads(line)["vers"] for line in response.text.splitlines()]


def caught_up(svc: LiveService, path: str, done: Callable[[list[str]], bool]) -> list[str]:
    """The versions ``svc`` lists once ``done`` holds for them, or past the staleness
    bound (a replica serves a change made through another within MAX_STALENESS)."""
    deadline = time.monotonic() + MAX_STALENESS + 0.5  # the bound, and a request's time
    while True:
        with contextlib.suppress(AssertionError):  # a new crate: 404 until caught up
            listed = index_versions(svc, path)
            if done(listed):
                return listed
        if time.monotonic() > deadline:
            return index_versions(svc, path)
        time.sleep(0.05)


def test_replicas_share_the_index_the_versions_and_the_jti_claims(
    replicas: list[LiveService], issuer: DevIssuer
) -> None:
    first, second, third = replicas
    registry_cli(first, "user", "add", "alice")
    alice = registry_cli(
        second, "token", "create", "--user", "alice",
        "--scope", "publish-new", "--scope", "publish-update",
    )  # fmt: skip

    # A publish through one is in the others' index within the bound.
    assert publish(first, alice, "spread", "0.1.0").status_code == 200
    for other in (second, third):
        assert caught_up(other, "sp/re/spread", lambda v: v == ["0.1.0"]) == ["0.1.0"]

    # 60 distinct versions spread over the replicas: all kept, once each.
    versions = [f"1.{i}.0" for i in range(60)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(
            pool.map(
                lambda iv: publish(replicas[iv[0] % REPLICAS], alice, "spread", iv[1]),
                enumerate(versions),
            )
        )
    assert [a.status_code for a in answers] == [200] * 60, [a.text for a in answers if a.is_error]
    expected = sorted(["0.1.0", *versions])
    for svc in replicas:
        listed = caught_up(svc, "sp/re/spread", lambda v: sorted(v) == expected)
        assert sorted(listed) == expected
        assert len(listed) == len(set(listed))

    # The same version (other bytes each time) through every replica at once: exactly
    # one is kept. (The very same bytes would all answer 200: a retry's answer.)
    def other_bytes(i: int) -> bytes:
        crate = make_crate("spread", "2.0.0", files={"attempt.rs": str(i).encode()})
        return publish_body(metadata("spread", "2.0.0"), crate)

    with ThreadPoolExecutor(max_workers=REPLICAS * 2) as pool:
        same = list(
            pool.map(
                lambda i: publish(replicas[i % REPLICAS], alice, "spread", "2.0.0", other_bytes(i)),
                range(6),
            )
        )
    assert sorted(a.status_code for a in same) == [200] + [409] * 5
    assert caught_up(third, "sp/re/spread", lambda v: "2.0.0" in v).count("2.0.0") == 1

    # One JWT sent to every replica at once yields one token.
    jwt = issuer.mint(first.audience)

    def exchange(svc: LiveService) -> httpx.Response:
        return httpx.post(
            f"{svc.url}/api/v1/trusted_publishing/tokens", json={"jwt": jwt}, timeout=30
        )

    with ThreadPoolExecutor(max_workers=REPLICAS) as pool:
        exchanged = list(pool.map(exchange, replicas))
    assert sorted(r.status_code for r in exchanged) == [200, 400, 400], [r.text for r in exchanged]
    token = next(r.json()["token"] for r in exchanged if r.status_code == 200)
    # The token minted by one replica is known to the others: each refuses it for the
    # policy's rule (tp-demo does not exist and the policy allows only updates), never
    # as an unknown token.
    for svc in replicas:
        refused = publish(svc, token, "tp-demo", "0.0.1")
        assert refused.status_code == 403
        detail = refused.json()["errors"][0]["detail"]
        assert "invalid, expired or revoked" not in detail, detail


def test_a_replica_killed_mid_stream_loses_no_acknowledged_publish(
    replicas: list[LiveService],
) -> None:
    first, second, third = replicas
    registry_cli(first, "user", "add", "alice")
    alice = registry_cli(first, "token", "create", "--user", "alice", "--scope", "publish-new",
                         "--scope", "publish-update")  # fmt: skip
    assert publish(first, alice, "survivor", "0.0.1").status_code == 200

    def attempt(i: int) -> tuple[str, int | None]:
        vers = f"0.{i}.0"
        try:
            return vers, publish(second, alice, "survivor", vers).status_code
        except httpx.HTTPError:
            return vers, None  # the replica died under this request: not acknowledged

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(attempt, i) for i in range(1, 41)]
        # Killed while publishes are in flight (the first answers show they are).
        for done, _ in enumerate(as_completed(futures, timeout=120)):
            if done == 4:
                break
        second.process.send_signal(signal.SIGKILL)
        results = [f.result(timeout=120) for f in futures]
    acknowledged = {vers for vers, status in results if status == 200}
    assert acknowledged
    for svc in (first, third):
        listed = set(caught_up(svc, "su/rv/survivor", lambda v: acknowledged <= set(v)))
        assert acknowledged <= listed
        assert listed - acknowledged - {"0.0.1"} <= {v for v, s in results if s is None}
        # Every listed version can be downloaded through the survivors.
        for vers in sorted(listed)[:5]:
            download = httpx.get(f"{svc.url}/api/v1/crates/survivor/{vers}/download", timeout=10)
            assert download.status_code == 200


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")
def test_cargo_publishes_through_one_replica_and_builds_through_another(
    replicas: list[LiveService], tmp_path: Path
) -> None:
    first, second, third = replicas
    registry_cli(first, "user", "add", "alice")
    alice = registry_cli(first, "token", "create", "--user", "alice", "--scope", "publish-new",
                         "--scope", "publish-update", "--scope", "yank")  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    publisher = Cargo(tmp_path / "cargo-publisher", f"sparse+{first.url}/index/")
    yanker = Cargo(tmp_path / "cargo-yanker", f"sparse+{second.url}/index/")
    consumer_cargo = Cargo(tmp_path / "cargo-consumer", f"sparse+{third.url}/index/")

    publisher.ok(make_package(work, "tp-demo", "0.1.0"), "publish", "--registry", "trustpub",
                 "--no-verify", token=alice)  # fmt: skip
    publisher.ok(make_package(work, "tp-demo", "0.2.0"), "publish", "--registry", "trustpub",
                 "--no-verify", token=alice)  # fmt: skip
    yanker.ok(work, "yank", "--registry", "trustpub", "--version", "0.2.0", "tp-demo",
              token=alice)  # fmt: skip
    consumer = make_package(
        work, "consumer", "0.0.0", deps='tp-demo = { version = "0.1", registry = "trustpub" }\n'
    )
    consumer_cargo.ok(consumer, "fetch")
    built = consumer_cargo.ok(consumer, "build", "--offline")
    assert "Compiling tp-demo v0.1.0" in built
    lock = (consumer / "Cargo.lock").read_text()
    assert 'name = "tp-demo"\nversion = "0.1.0"' in lock
