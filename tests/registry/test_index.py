"""The sparse index: config.json, per-crate files, caching headers."""

from __future__ import annotations

import hashlib

from tests.registry.conftest import PUBLIC_URL, RegistryEnv, detail
from tests.registry.helpers import dep, make_crate


def test_config_json_points_cargo_at_the_public_url(env: RegistryEnv) -> None:
    response = env.client.get("/index/config.json")
    assert response.json() == {
        "dl": f"{PUBLIC_URL}/api/v1/crates",
        "api": PUBLIC_URL,
        "auth-required": False,
    }


def test_index_lists_every_version_with_its_checksum(env: RegistryEnv) -> None:
    env.user("alice")
    token = env.token("alice")
    assert env.publish(token, "Demo-Lib", "1.0.0").status_code == 200
    assert env.publish(token, "Demo-Lib", "1.1.0", rust_version="1.70").status_code == 200
    lines = env.index_lines("Demo-Lib")
    assert [line["vers"] for line in lines] == ["1.0.0", "1.1.0"]
    assert lines[0]["name"] == "Demo-Lib"
    assert lines[0]["cksum"] == hashlib.sha256(make_crate("Demo-Lib", "1.0.0")).hexdigest()
    assert lines[1]["rust_version"] == "1.70"
    assert all(line["yanked"] is False for line in lines)
    # The file lives at the lower-cased path.
    assert env.client.get("/index/de/mo/demo-lib").status_code == 200


def test_renamed_dependencies_are_indexed_under_the_manifest_name(env: RegistryEnv) -> None:
    env.user("alice")
    token = env.token("alice")
    env.publish(token, "base", "1.0.0")
    response = env.publish(
        token,
        "app",
        "0.1.0",
        deps=[dep("base", "^1", explicit_name_in_toml="renamed", optional=True)],
        features={"extra": ["dep:renamed"]},
    )
    assert response.status_code == 200, response.text
    (line,) = env.index_lines("app")
    assert line["deps"][0]["name"] == "renamed"
    assert line["deps"][0]["package"] == "base"
    assert line["features2"] == {"extra": ["dep:renamed"]}
    assert line["v"] == 2


def test_unknown_crates_and_wrong_paths_are_404(env: RegistryEnv) -> None:
    assert env.index("nothing").status_code == 404
    env.user("alice")
    env.publish(env.token("alice"), "demo", "1.0.0")
    assert env.client.get("/index/xx/yy/demo").status_code == 404
    assert env.client.get("/index/de/mo/Demo").status_code == 404
    response = env.client.get("/index/3/d/demo")
    assert response.status_code == 404
    assert "no index file" in detail(response)


def test_conditional_requests_get_304_until_the_file_changes(env: RegistryEnv) -> None:
    env.user("alice")
    token = env.token("alice")
    env.publish(token, "demo", "1.0.0")
    first = env.index("demo")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"')
    not_modified = env.index("demo", **{"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == etag
    assert env.index("demo", **{"If-Modified-Since": last_modified}).status_code == 304
    assert env.index("demo", **{"If-None-Match": '"other"'}).status_code == 200
    assert env.index("demo", **{"If-Modified-Since": "garbage"}).status_code == 200

    # A yank changes the content, so the old ETag no longer matches.
    assert env.client.delete(
        "/api/v1/crates/demo/1.0.0/yank", headers={"Authorization": token}
    ).json() == {"ok": True}
    changed = env.index("demo", **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert env.index_lines("demo")[0]["yanked"] is True
