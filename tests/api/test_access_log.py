import logging
import os

import pytest

from tests.api.conftest import Service, ServiceFactory


def test_access_log_has_method_path_status_and_never_headers(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    token = service.token()
    with caplog.at_level(logging.INFO, logger="trustpub.access"):
        service.client.delete(
            "/api/v1/trusted_publishing/tokens", headers={"Authorization": f"Bearer {token}"}
        )
    records = [r for r in caplog.records if r.name == "trustpub.access"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["method"] == "DELETE"
    assert fields["path"] == "/api/v1/trusted_publishing/tokens"
    assert fields["status"] == 204
    assert fields["ms"] >= 0
    assert token not in repr(fields)


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if r.name == logger]  # type: ignore[attr-defined]


def test_a_sane_request_id_is_kept_returned_and_named_in_access_and_audit_lines(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="trustpub"):
        response = service.client.post(
            "/api/v1/trusted_publishing/tokens",
            json={"jwt": service.github_jwt()},
            headers={"X-Request-Id": "ci-run:42/attempt.1", "User-Agent": "cargo/1.90.0"},
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "ci-run:42/attempt.1"
    (access,) = _lines(caplog, "trustpub.access")
    assert access["request_id"] == "ci-run:42/attempt.1"
    assert access["user_agent"] == "cargo/1.90.0"
    assert access["client"] == "testclient"
    (audit,) = _lines(caplog, "trustpub.audit")
    assert audit["request_id"] == "ci-run:42/attempt.1"
    assert audit["client"] == "testclient"


@pytest.mark.parametrize("incoming", ["", "a" * 129, "two words", "new\nline", "é"])
def test_an_insane_request_id_is_replaced_by_a_new_one(
    service: Service, caplog: pytest.LogCaptureFixture, incoming: str
) -> None:
    with caplog.at_level(logging.INFO, logger="trustpub.access"):
        response = service.client.get(
            "/healthz", headers=[(b"x-request-id", incoming.encode("utf-8"))]
        )
    returned = response.headers["x-request-id"]
    assert returned != incoming
    assert len(returned) == 32
    assert _lines(caplog, "trustpub.access")[0]["request_id"] == returned


def test_each_request_gets_its_own_id(service: Service) -> None:
    ids = {service.client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_a_long_user_agent_is_cut(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trustpub.access"):
        service.client.get("/healthz", headers={"User-Agent": "x" * 5000})
    assert _lines(caplog, "trustpub.access")[0]["user_agent"] == "x" * 256


def test_the_client_comes_from_the_forwarding_header_of_a_trusted_proxy_only(
    service_factory: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Starlette's TestClient connects from the peer "testclient", which is no address:
    # never a trusted proxy, so its header is ignored...
    untrusted = service_factory(trusted_proxies=("127.0.0.1",))
    with caplog.at_level(logging.INFO, logger="trustpub.access"):
        untrusted.client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert _lines(caplog, "trustpub.access")[-1]["client"] == "testclient"


def test_a_trusted_proxys_forwarded_client_reaches_access_and_audit_lines(
    service_factory: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from starlette.testclient import TestClient

    service = service_factory(trusted_proxies=("10.0.0.0/8",))
    app = service.client.app
    with (
        TestClient(app, client=("10.1.2.3", 5000)) as proxied,
        caplog.at_level(logging.INFO, logger="trustpub"),
    ):
        proxied.post(
            "/api/v1/trusted_publishing/tokens",
            json={"jwt": service.github_jwt()},
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
        )
    assert _lines(caplog, "trustpub.access")[-1]["client"] == "203.0.113.9"
    assert _lines(caplog, "trustpub.audit")[-1]["client"] == "203.0.113.9"


def test_new_request_ids_differ_and_a_forked_process_draws_its_own() -> None:
    from trustpub.api import access

    ids = {access.request_id([]) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not repeat the parent's
        os.write(write, access.request_id([]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child[:16] != access.request_id([])[:16]
