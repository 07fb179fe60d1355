"""The registry's counters, incremented where each request is carried out."""

from __future__ import annotations

from tests.registry.conftest import RegistryEnv
from trustpub.grants import Operation


def test_registry_counts_publishes_downloads_index_yanks_owners_and_refusals(
    env: RegistryEnv,
) -> None:
    metrics = env.registry.metrics
    env.user("alice")
    env.user("bob")
    alice = env.token("alice")
    headers = {"Authorization": alice}

    assert env.publish(alice, "demo", "1.0.0").status_code == 200
    trusted = env.authority.grant({"demo": {Operation.PUBLISH_UPDATE}})
    assert env.publish(trusted, "demo", "1.1.0").status_code == 200
    assert metrics.publishes.value("api-token") == 1
    assert metrics.publishes.value("trustpub") == 1

    assert env.client.get("/api/v1/crates/demo/1.0.0/download").status_code == 200
    assert metrics.downloads.value() == 1

    first = env.index("demo")
    assert first.status_code == 200
    assert env.index("demo", **{"If-None-Match": first.headers["etag"]}).status_code == 304
    assert metrics.index_requests.value("ok") == 1
    assert metrics.index_requests.value("not_modified") == 1

    assert env.client.delete("/api/v1/crates/demo/1.0.0/yank", headers=headers).status_code == 200
    assert env.client.put("/api/v1/crates/demo/1.0.0/unyank", headers=headers).status_code == 200
    assert metrics.yanks.value("yank") == 1
    assert metrics.yanks.value("unyank") == 1

    owners = "/api/v1/crates/demo/owners"
    assert env.client.put(owners, json={"users": ["bob"]}, headers=headers).status_code == 200
    assert metrics.owner_changes.value("add") == 0  # invited, not yet an owner
    assert env.answer_invitation(env.token("bob"), "demo").status_code == 200
    removed = env.client.request("DELETE", owners, json={"users": ["bob"]}, headers=headers)
    assert removed.status_code == 200
    assert metrics.owner_changes.value("add") == 1
    assert metrics.owner_changes.value("remove") == 1

    assert env.publish(None, "demo", "2.0.0").status_code == 403
    assert env.client.get("/api/v1/crates/nope/1.0.0/download").status_code == 404
    assert metrics.refusals.value("forbidden") == 1
    assert metrics.refusals.value("not_found") == 1
    # Refused requests count nowhere else.
    assert metrics.publishes.value("api-token") == 1
    assert metrics.downloads.value() == 1
