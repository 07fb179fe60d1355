"""Where notifications may go, and the ``[notifications]`` settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.notify.test_delivery import Mailbox, free_port
from trustpub.config import load_settings
from trustpub.errors import ConfigurationError
from trustpub.notify.addresses import (
    DestinationRefused,
    WebhookRules,
    check_address,
    check_email,
    parse_webhook_url,
    resolve,
)
from trustpub.notify.mail import MailNotConfigured, send_mail
from trustpub.notify.settings import NotificationSettings

STRICT = WebhookRules()
PRIVATE = WebhookRules(allow_private=True)
DEV = WebhookRules(development=True)


@pytest.mark.parametrize("address", ["alice@example.org", "a.b+tag@sub.example.co", "x@localhost"])
def test_plain_addresses_are_accepted(address: str) -> None:
    assert check_email(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "",
        "alice",
        "alice@",
        "@example.org",
        "alice@example.org\r\nBcc: eve@example.org",
        "Alice <alice@example.org>",
        "alice@example.org, eve@example.org",
        '"alice"@example.org',
        "alice@-example.org",
        "älice@example.org",
        "a" * 65 + "@example.org",
        "a@" + "b" * 250 + ".org",
    ],
)
def test_anything_else_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="invalid email address"):
        check_email(address)


@pytest.mark.parametrize(
    ("ip", "rules", "allowed"),
    [
        ("93.184.215.14", STRICT, True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", STRICT, True),
        ("127.0.0.1", STRICT, False),
        ("::1", STRICT, False),
        ("::ffff:127.0.0.1", STRICT, False),
        ("10.1.2.3", STRICT, False),
        ("192.168.0.10", STRICT, False),
        ("169.254.169.254", STRICT, False),
        ("fe80::1", STRICT, False),
        ("fd00::1", STRICT, False),
        ("100.64.0.1", STRICT, False),
        ("0.0.0.0", PRIVATE, False),
        ("224.0.0.1", PRIVATE, False),
        ("10.1.2.3", PRIVATE, True),
        ("169.254.169.254", PRIVATE, True),
        ("127.0.0.1", PRIVATE, True),
        ("127.0.0.1", DEV, True),
        ("10.1.2.3", DEV, False),
    ],
)
def test_https_destinations(ip: str, rules: WebhookRules, allowed: bool) -> None:
    destination = parse_webhook_url("https://hooks.example.org/x", rules)
    if allowed:
        check_address(ip, destination, rules)
    else:
        with pytest.raises(DestinationRefused):
            check_address(ip, destination, rules)


def test_plain_http_only_to_loopback_and_only_in_development() -> None:
    with pytest.raises(DestinationRefused, match="https"):
        parse_webhook_url("http://127.0.0.1:9/x", PRIVATE)
    destination = parse_webhook_url("http://hooks.example.org/x", DEV)
    check_address("127.0.0.1", destination, DEV)
    with pytest.raises(DestinationRefused, match="loopback"):
        check_address("93.184.215.14", destination, DEV)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.org/x", "https"),
        ("https:///x", "host"),
        ("https://u:p@example.org/x", "credentials"),
        ("https://example.org/x#frag", "fragment"),
        ("https://example.org:99999/x", "port"),
        ("https://exa mple.org/x", "spaces"),
    ],
)
def test_malformed_webhook_urls(url: str, problem: str) -> None:
    with pytest.raises(DestinationRefused, match=problem):
        parse_webhook_url(url, PRIVATE)


def test_a_name_is_refused_if_any_address_is(tmp_path: Path) -> None:
    # `localhost` resolves to loopback: what a rebinding name would resolve to.
    destination = parse_webhook_url("https://localhost:8443/x", STRICT)
    with pytest.raises(DestinationRefused, match="loopback"):
        resolve(destination, STRICT)
    assert resolve(destination, PRIVATE).is_loopback


def test_the_notifications_table(tmp_path: Path) -> None:
    password = tmp_path / "smtp-password"
    password.write_text("s3cret\n")
    config = tmp_path / "trustpub.toml"
    config.write_text(
        "[notifications]\n"
        'smtp_url = "smtp://mail.example.org:587"\n'
        "starttls = true\n"
        'smtp_username = "trustpub"\n'
        f'smtp_password_file = "{password}"\n'
        'from_address = "registry@example.org"\n'
        "webhooks_allow_private = true\n"
        "max_attempts = 3\n"
    )
    n = load_settings(config, environ={}).notifications
    assert n.smtp_url == "smtp://mail.example.org:587"
    assert n.starttls
    assert n.smtp_username == "trustpub"
    assert n.smtp_password == "s3cret"
    assert "s3cret" not in repr(n)
    assert n.from_address == "registry@example.org"
    assert n.webhooks == WebhookRules(allow_private=True)
    assert n.max_attempts == 3


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('smtp_url = "http://mail.example.org"', "smtp_url"),
        ('smtp_url = "smtp://user:pw@mail.example.org"', "not in the URL"),
        ('from_address = "nobody"', "from_address"),
        ("max_attempts = 0", "max_attempts"),
        ('smtp_password_file = "/nonexistent/file"', "cannot read"),
        ("sendmail = true", "unknown key"),
    ],
)
def test_bad_notifications_settings(tmp_path: Path, body: str, problem: str) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(f"[notifications]\n{body}\n")
    with pytest.raises(ConfigurationError, match=problem):
        load_settings(config, environ={})


def test_mail_without_a_server_is_not_sent() -> None:
    with pytest.raises(MailNotConfigured):
        send_mail(NotificationSettings(), "alice@example.org", "s", "b")


@pytest.fixture
def authenticating_smtp() -> Iterator[tuple[str, Mailbox, list[tuple[str, str]]]]:
    box = Mailbox()
    logins: list[tuple[str, str]] = []

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = (data.login.decode(), data.password.decode())
        logins.append(login)
        return AuthResult(success=login == ("trustpub", "s3cret"))

    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", box, logins
    finally:
        controller.stop()


# Plain-text AUTH on loopback: the test server has no certificate.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_mail_with_credentials(
    authenticating_smtp: tuple[str, Mailbox, list[tuple[str, str]]],
) -> None:
    url, box, logins = authenticating_smtp
    settings = NotificationSettings(smtp_url=url, smtp_username="trustpub", smtp_password="s3cret")
    send_mail(settings, "alice@example.org", "hello", "body\n")
    assert logins == [("trustpub", "s3cret")]
    [(rcpt, message)] = box.messages
    assert rcpt == ["alice@example.org"]
    assert message["Subject"] == "hello"
