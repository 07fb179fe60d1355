import logging

import pytest

from tests.api.conftest import Service


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
