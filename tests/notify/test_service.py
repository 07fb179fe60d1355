"""The service runs the outbox worker in its lifespan: mail queued by a change goes out
without anyone asking."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.testclient import TestClient

from tests.notify.test_delivery import free_port
from tests.registry.helpers import body_for
from trustpub.api import create_app
from trustpub.config import Settings
from trustpub.notify.settings import NotificationSettings
from trustpub.registry import Registry
from trustpub.registry.auth import generate_user_token, user_token_hash
from trustpub.registry.db import events


class Arrivals:
    def __init__(self) -> None:
        self.recipients: list[str] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.recipients += envelope.rcpt_tos
        self.arrived.set()
        return "250 OK"


def test_the_service_delivers_its_outbox_in_the_background(tmp_path: Path) -> None:
    arrivals = Arrivals()
    port = free_port()
    controller = Controller(arrivals, hostname="127.0.0.1", port=port)
    controller.start()
    (tmp_path / "policies").mkdir()
    settings = replace(
        Settings(),
        policy_dir=tmp_path / "policies",
        store_url=f"sqlite:///{tmp_path}/store.db",
        data_dir=tmp_path / "data",
        policy_reload_interval=0,
        notifications=NotificationSettings(smtp_url=f"smtp://127.0.0.1:{port}", poll_interval=0.05),
    )
    # No network: the issuers' key sets are not reachable from tests.
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    try:
        app = create_app(settings, http_client=http)
        with TestClient(app) as client:
            registry: Registry = app.state.cargo_registry
            registry.db.add_user("alice", "alice@example.org")
            token = generate_user_token()
            registry.db.add_token("alice", "t", user_token_hash(token), ["publish-new"], [], None)
            response = client.put(
                "/api/v1/crates/new",
                content=body_for("demo", "1.0.0"),
                headers={"Authorization": token},
            )
            assert response.status_code == 200, response.text
            record_config_created(registry)
            # A generous bound for a loaded machine; the worker polls every 50 ms.
            assert arrivals.arrived.wait(60)
    finally:
        controller.stop()
    assert arrivals.recipients == ["alice@example.org"]


def record_config_created(registry: Registry) -> None:
    """What owner-managed configs will record: an event owners are mailed about."""
    registry.db.call(
        lambda c: events.record_event(
            c,
            kind=events.CONFIG_CREATED,
            crate="demo",
            actor_login="alice",
            details={"repository": "octo-org/octo-lib"},
            now=registry.db.now(),
        )
    )


def test_the_registry_on_its_own_delivers_too(tmp_path: Path) -> None:
    from trustpub.registry import create_registry_app

    arrivals = Arrivals()
    port = free_port()
    controller = Controller(arrivals, hostname="127.0.0.1", port=port)
    controller.start()
    notifications = NotificationSettings(smtp_url=f"smtp://127.0.0.1:{port}", poll_interval=0.05)
    try:
        app = create_registry_app(tmp_path, "http://registry.test", notifications=notifications)
        with TestClient(app) as client:
            registry: Registry = app.state.registry
            registry.db.add_user("alice", "alice@example.org")
            token = generate_user_token()
            registry.db.add_token("alice", "t", user_token_hash(token), ["publish-new"], [], None)
            response = client.put(
                "/api/v1/crates/new",
                content=body_for("demo", "1.0.0"),
                headers={"Authorization": token},
            )
            assert response.status_code == 200, response.text
            record_config_created(registry)
            assert arrivals.arrived.wait(60)
    finally:
        controller.stop()
    assert arrivals.recipients == ["alice@example.org"]
