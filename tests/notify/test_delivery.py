"""Notifications end to end: a real SMTP server (aiosmtpd) receiving owners' mail, a
real HTTP receiver verifying webhook signatures, retries that give up, and two
workers that never deliver one row twice."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.registry.conftest import PUBLIC_URL, FakeAuthority, RegistryEnv
from tests.registry.helpers import body_for
from trustpub.grants import Operation
from trustpub.notify import webhooks
from trustpub.notify.addresses import WebhookRules
from trustpub.notify.outbox import OutboxWorker
from trustpub.notify.settings import NotificationSettings
from trustpub.registry import Registry, create_registry_app
from trustpub.registry.db import RegistryDB
from trustpub.registry.db import events as kinds

UPDATE = Operation.PUBLISH_UPDATE
LOCAL = WebhookRules(allow_private=True, development=True)


# -- a real SMTP server ----------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    """aiosmtpd checks its server by connecting to the port it was given: pick a free one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def smtp() -> Iterator[tuple[str, Mailbox]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", box
    finally:
        controller.stop()


# -- a real webhook receiver -----------------------------------------------------------


@dataclass
class Receiver:
    url: str
    status: int = 200
    secret: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliveries(self) -> list[str]:
        return [headers[webhooks.DELIVERY_HEADER.lower()] for headers, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.received.append((headers, body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/trustpub"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- a registry, and workers on it -------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RegistryEnv]:
    from starlette.testclient import TestClient

    authority = FakeAuthority()
    app = create_registry_app(tmp_path, PUBLIC_URL, authority=authority)
    with TestClient(app) as client:
        registry: Registry = app.state.registry
        registry.webhook_rules = LOCAL
        yield RegistryEnv(client, registry, authority, tmp_path)


def deliver(db: RegistryDB, settings: NotificationSettings, worker_id: str = "w1") -> int:
    async def run() -> int:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await OutboxWorker(db, settings, client, worker_id=worker_id).deliver_due()

    return anyio.run(run)


def owned_demo(env: RegistryEnv, emails: bool = True) -> str:
    env.registry.db.add_user("alice", "alice@example.org" if emails else None)
    env.registry.db.add_user("bob")  # an address once an owner (no invitation mail)
    env.registry.db.add_user("carol")  # no address: not mailed
    alice = env.token("alice")
    assert env.publish(alice, "demo", "1.0.0").status_code == 200
    response = env.client.put(
        "/api/v1/crates/demo/owners",
        json={"users": ["bob", "carol"]},
        headers={"Authorization": alice},
    )
    assert response.status_code == 200
    # Owners are invited; each accepts, and is an owner from then on.
    crate = env.registry.db.crate("demo")
    assert crate is not None
    for login in ("bob", "carol"):
        accepted = env.client.put(
            f"/api/v1/me/crate_owner_invitations/{crate.id}",
            json={"crate_owner_invite": {"crate_id": crate.id, "accepted": True}},
            headers={"Authorization": env.token(login)},
        )
        assert accepted.status_code == 200, accepted.text
    if emails:
        env.registry.db.set_email("bob", "bob@example.org")
    return alice


def release(env: RegistryEnv, vers: str) -> None:
    ci = env.authority.grant({"demo": {UPDATE}})
    response = env.client.put(
        "/api/v1/crates/new", content=body_for("demo", vers), headers={"Authorization": ci}
    )
    assert response.status_code == 200, response.text


def subscribe(env: RegistryEnv, token: str, url: str) -> dict[str, Any]:
    response = env.client.put(
        "/api/v1/crates/demo/webhooks",
        json={"webhook": {"url": url}},
        headers={"Authorization": token},
    )
    assert response.status_code == 200, response.text
    hook: dict[str, Any] = response.json()["webhook"]
    return hook


# -- tests -------------------------------------------------------------------------------


def test_an_invited_user_with_an_address_is_mailed_the_invitation(
    env: RegistryEnv, smtp: tuple[str, Mailbox]
) -> None:
    url, box = smtp
    env.registry.db.add_user("alice", "alice@example.org")
    env.registry.db.add_user("bob", "bob@example.org")
    env.registry.db.add_user("carol")  # no address: invited, not mailed
    alice = env.token("alice")
    assert env.publish(alice, "demo", "1.0.0").status_code == 200
    response = env.client.put(
        "/api/v1/crates/demo/owners",
        json={"users": ["bob", "carol"]},
        headers={"Authorization": alice},
    )
    assert response.status_code == 200, response.text
    settings = NotificationSettings(smtp_url=url, from_address="registry@example.org")
    assert deliver(env.registry.db, settings) == 1
    ((rcpt, message),) = box.messages
    assert rcpt == ["bob@example.org"]  # the invitee only, not the owners
    assert message["Subject"] == "You are invited to be an owner of crate demo"
    body = message.get_payload()
    assert "alice invited you to be an owner of crate demo" in body
    assert "/api/v1/me/crate_owner_invitations" in body
    assert "expires at" in body


def test_owners_with_an_address_are_mailed_through_smtp(
    env: RegistryEnv, smtp: tuple[str, Mailbox]
) -> None:
    url, box = smtp
    alice = owned_demo(env)
    release(env, "1.1.0")
    assert box.messages == []  # nothing is sent from the request
    settings = NotificationSettings(smtp_url=url, from_address="registry@example.org")
    assert deliver(env.registry.db, settings) == 2
    assert sorted(rcpt[0] for rcpt, _ in box.messages) == ["alice@example.org", "bob@example.org"]
    for _, message in box.messages:
        assert message["From"] == "registry@example.org"
        assert message["Subject"] == "demo 1.1.0 was published through Trusted Publishing"
        assert "octo-org/octo-lib" in message.get_payload()
    # Delivered rows are not sent again.
    assert deliver(env.registry.db, settings) == 0
    assert len(box.messages) == 2
    events = env.client.get("/api/v1/crates/demo/audit", headers={"Authorization": alice}).json()[
        "events"
    ]
    assert [(d["recipient"], d["state"]) for d in events[0]["deliveries"]] == [
        ("alice", "delivered"),
        ("bob", "delivered"),
    ]
    # Owners see to whom (a login), never the addresses.
    assert "example.org" not in json.dumps(events)


def test_a_down_smtp_server_never_fails_the_release_and_is_retried(
    env: RegistryEnv, smtp: tuple[str, Mailbox]
) -> None:
    url, box = smtp
    owned_demo(env)
    release(env, "1.1.0")
    closed = NotificationSettings(smtp_url="smtp://127.0.0.1:1", retry_base=0)
    assert deliver(env.registry.db, closed) == 2
    assert box.messages == []
    assert deliver(env.registry.db, NotificationSettings(smtp_url=url)) == 2
    assert len(box.messages) == 2


def test_webhooks_are_signed_and_their_state_is_visible(
    env: RegistryEnv, receiver: Receiver
) -> None:
    alice = owned_demo(env, emails=False)
    hook = subscribe(env, alice, receiver.url)
    secret = hook.pop("secret")
    assert secret.startswith("whsec_")
    assert hook["last_delivery"] is None
    listed = env.client.get("/api/v1/crates/demo/webhooks", headers={"Authorization": alice})
    assert "secret" not in listed.text
    assert secret not in listed.text
    release(env, "1.1.0")
    settings = NotificationSettings(webhooks=LOCAL)
    assert deliver(env.registry.db, settings) == 1
    [(headers, body)] = receiver.received
    assert webhooks.verify(secret, body, headers[webhooks.SIGNATURE_HEADER.lower()])
    assert not webhooks.verify("whsec_other", body, headers[webhooks.SIGNATURE_HEADER.lower()])
    payload = json.loads(body)
    assert payload["delivery_id"] == headers[webhooks.DELIVERY_HEADER.lower()]
    assert str(payload["timestamp"]) == headers[webhooks.TIMESTAMP_HEADER.lower()]
    assert headers[webhooks.EVENT_HEADER.lower()] == kinds.TRUSTPUB_PUBLISH
    assert payload["event"]["kind"] == kinds.TRUSTPUB_PUBLISH
    assert payload["event"]["details"]["version"] == "1.1.0"
    listed = env.client.get("/api/v1/crates/demo/webhooks", headers={"Authorization": alice})
    assert listed.json()["webhooks"][0]["last_delivery"]["state"] == "delivered"


def test_a_failing_receiver_is_retried_then_given_up(env: RegistryEnv, receiver: Receiver) -> None:
    alice = owned_demo(env, emails=False)
    subscribe(env, alice, receiver.url)
    receiver.status = 500
    release(env, "1.1.0")
    settings = NotificationSettings(webhooks=LOCAL, max_attempts=3, retry_base=0)
    for _ in range(5):
        deliver(env.registry.db, settings)
    assert len(receiver.received) == 3
    # The same delivery id on every attempt: receivers can deduplicate.
    assert len(set(receiver.deliveries())) == 1
    listed = env.client.get("/api/v1/crates/demo/webhooks", headers={"Authorization": alice})
    last = listed.json()["webhooks"][0]["last_delivery"]
    assert last["state"] == "failed"
    assert last["attempts"] == 3
    assert last["last_error"] == "the receiver answered HTTP 500"


def test_a_retry_waits_for_its_backoff(env: RegistryEnv, receiver: Receiver) -> None:
    alice = owned_demo(env, emails=False)
    subscribe(env, alice, receiver.url)
    receiver.status = 503
    release(env, "1.1.0")
    settings = NotificationSettings(webhooks=LOCAL, retry_base=3600)
    assert deliver(env.registry.db, settings) == 1
    assert deliver(env.registry.db, settings) == 0  # not due for an hour
    assert len(receiver.received) == 1


def test_two_workers_never_deliver_a_row_twice(env: RegistryEnv, receiver: Receiver) -> None:
    alice = owned_demo(env, emails=False)
    subscribe(env, alice, receiver.url)
    for minor in range(1, 21):
        release(env, f"1.{minor}.0")
    settings = NotificationSettings(webhooks=LOCAL)
    # Two databases on one file: two processes' connections, as far as SQLite knows.
    other = RegistryDB(env.directory / "registry.db")
    other.open()

    async def both() -> list[int]:
        counts: list[int] = []
        async with httpx.AsyncClient(trust_env=False) as client:

            async def run(db: RegistryDB, name: str) -> None:
                counts.append(
                    await OutboxWorker(db, settings, client, worker_id=name).deliver_due()
                )

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(run, env.registry.db, "one")
                tasks.start_soon(run, other, "two")
        return counts

    try:
        counts = anyio.run(both)
    finally:
        other.close()
    assert sum(counts) == 20
    assert sorted(receiver.deliveries()) == sorted(set(receiver.deliveries()))
    assert len(receiver.received) == 20


def test_a_deleted_subscription_gets_nothing_more(env: RegistryEnv, receiver: Receiver) -> None:
    alice = owned_demo(env, emails=False)
    hook = subscribe(env, alice, receiver.url)
    release(env, "1.1.0")
    response = env.client.delete(
        f"/api/v1/crates/demo/webhooks/{hook['id']}", headers={"Authorization": alice}
    )
    assert response.status_code == 204
    assert deliver(env.registry.db, NotificationSettings(webhooks=LOCAL)) == 1
    assert receiver.received == []
    gone = env.client.delete(
        f"/api/v1/crates/demo/webhooks/{hook['id']}", headers={"Authorization": alice}
    )
    assert gone.status_code == 404
    events = env.client.get("/api/v1/crates/demo/audit", headers={"Authorization": alice}).json()[
        "events"
    ]
    assert events[0]["kind"] == kinds.WEBHOOK_DELETED
    published = next(e for e in events if e["kind"] == kinds.TRUSTPUB_PUBLISH)
    [webhook_delivery] = [d for d in published["deliveries"] if d["channel"] == "webhook"]
    assert webhook_delivery["state"] == "failed"
    assert webhook_delivery["last_error"] == "the webhook subscription was deleted"


def test_the_address_is_checked_again_at_delivery(env: RegistryEnv, receiver: Receiver) -> None:
    alice = owned_demo(env, emails=False)
    subscribe(env, alice, receiver.url)
    release(env, "1.1.0")
    # The operator's rules changed (or the name now resolves elsewhere): refused now.
    strict = NotificationSettings(webhooks=WebhookRules(), max_attempts=1)
    assert deliver(env.registry.db, strict) == 1
    assert receiver.received == []
    listed = env.client.get("/api/v1/crates/demo/webhooks", headers={"Authorization": alice})
    last = listed.json()["webhooks"][0]["last_delivery"]
    assert last["state"] == "failed"
    assert "https" in last["last_error"]


def test_subscribing_needs_an_owner_with_the_trusted_publishing_scope(
    env: RegistryEnv, receiver: Receiver
) -> None:
    owned_demo(env, emails=False)
    yank_only = env.token("alice", scopes=("yank",))
    response = env.client.put(
        "/api/v1/crates/demo/webhooks",
        json={"webhook": {"url": receiver.url}},
        headers={"Authorization": yank_only},
    )
    assert response.status_code == 403
    assert "trusted-publishing" in response.json()["errors"][0]["detail"]
    env.registry.db.add_user("mallory")
    mallory = env.token("mallory")
    response = env.client.put(
        "/api/v1/crates/demo/webhooks",
        json={"webhook": {"url": receiver.url}},
        headers={"Authorization": mallory},
    )
    assert response.status_code == 403
    assert env.client.get("/api/v1/crates/demo/webhooks").status_code == 401


def test_subscriptions_refuse_bad_urls_and_duplicates(env: RegistryEnv, receiver: Receiver) -> None:
    alice = owned_demo(env, emails=False)
    subscribe(env, alice, receiver.url)

    def put(body: object) -> httpx.Response:
        response: httpx.Response = env.client.put(
            "/api/v1/crates/demo/webhooks", json=body, headers={"Authorization": alice}
        )
        return response

    assert put({"webhook": {"url": receiver.url}}).status_code == 409
    assert put({"url": receiver.url}).status_code == 400
    assert put({"webhook": {"url": "ftp://example.org/x"}}).status_code == 400
    assert put({"webhook": {"url": "https://user:pw@example.org/x"}}).status_code == 400
    env.registry.webhook_rules = WebhookRules()
    refused = put({"webhook": {"url": "https://127.0.0.1/x"}})
    assert refused.status_code == 400
    assert "loopback" in refused.json()["errors"][0]["detail"]
