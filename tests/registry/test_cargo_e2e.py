"""The real ``cargo`` against a live ``trustpub serve`` with its embedded registry.

One scenario, in order, because every cargo invocation costs seconds: a crate is
published with a registry user's API token, an OIDC token from the local dev issuer
is exchanged under a trust policy, and the minted token publishes, yanks, unyanks and
changes owners where the policy allows and is refused with the registry's message
where it does not; a second crate depends on the first and a consumer builds from
the registry; the token is revoked and refused afterwards.

Nothing reaches the internet: CARGO_HOME is private to the test, and no crate depends
on crates.io.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import LiveService, registry_cli, run_service
from tests.registry.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from trustpub.devissuer import DevIssuer, serve_in_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo"),
]

POLICIES = """
[[policy]]
name = "release"
provider = "github"
issuer = "{issuer}"
crates = ["tp-demo"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
operations = ["publish-update", "yank", "change-owners"]

[[policy]]
name = "bootstrap"
provider = "github"
issuer = "{issuer}"
crates = ["tp-fresh"]
repository = "octo-org/octo-lib"
repository_owner_id = "131804563"
workflow = "release.yml"
operations = ["publish-new"]
owners = ["alice"]
"""


@pytest.fixture
def issuer() -> Iterator[DevIssuer]:
    with serve_in_thread(provider="github") as running:
        yield running


class Cargo:
    def __init__(self, home: Path, index: str) -> None:
        self.home = home
        home.mkdir()
        (home / "config.toml").write_text(
            f'[registries.trustpub]\nindex = "{index}"\n'
            # Never fall back to crates.io, and keep builds quick.
            '[net]\nretry = 0\n[term]\ncolor = "never"\n'
        )

    def __call__(
        self, cwd: Path, *args: str, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("CARGO_", "RUSTUP_TOOLCHAIN"))
        }
        env.update(
            {
                "CARGO_HOME": str(self.home),
                "CARGO_TARGET_DIR": str(self.home / "target"),
                "CARGO_TERM_COLOR": "never",
                "CARGO_HTTP_TIMEOUT": "20",
                "CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS": "cargo:token",
            }
        )
        if "RUSTUP_HOME" not in env and (Path.home() / ".rustup").is_dir():
            env["RUSTUP_HOME"] = str(Path.home() / ".rustup")
        if token is not None:
            env["CARGO_REGISTRIES_TRUSTPUB_TOKEN"] = token
        return subprocess.run(
            ["cargo", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    def ok(self, cwd: Path, *args: str, token: str | None = None) -> str:
        result = self(cwd, *args, token=token)
        assert result.returncode == 0, result.stderr
        return result.stderr

    def fails(self, cwd: Path, *args: str, token: str | None = None) -> str:
        result = self(cwd, *args, token=token)
        assert result.returncode != 0, result.stderr
        return result.stderr


def make_package(
    root: Path, name: str, version: str, deps: str = "", code: str = "", package_extra: str = ""
) -> Path:
    package = root / f"{name}-{version}"
    (package / "src").mkdir(parents=True)
    (package / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "{version}"\nedition = "2021"\n'
        f'description = "{name}, a test crate"\nlicense = "MIT"\n'
        f'publish = ["trustpub"]\n{package_extra}\n[dependencies]\n{deps}'
    )
    (package / "src" / "lib.rs").write_text(code or "pub fn answer() -> u32 { 42 }\n")
    return package


def owners(svc: LiveService, crate: str) -> list[str]:
    response = httpx.get(f"{svc.url}/api/v1/crates/{crate}/owners")
    return [u["login"] for u in response.json()["users"]]


def accept_invitation(svc: LiveService, token: str, crate: str) -> None:
    headers = {"Authorization": token}
    listing = httpx.get(f"{svc.url}/api/v1/me/crate_owner_invitations", headers=headers)
    assert listing.status_code == 200, listing.text
    (crate_id,) = [
        i["crate_id"] for i in listing.json()["crate_owner_invitations"] if i["crate_name"] == crate
    ]
    answer = {"crate_owner_invite": {"crate_id": crate_id, "accepted": True}}
    response = httpx.put(
        f"{svc.url}/api/v1/me/crate_owner_invitations/{crate_id}", json=answer, headers=headers
    )
    assert response.status_code == 200, response.text


def index_lines(svc: LiveService, path: str) -> list[dict[str, object]]:
    response = httpx.get(f"{svc.url}/index/{path}")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_cargo_publishes_yanks_and_changes_owners_with_trusted_publishing(
    tmp_path: Path, issuer: DevIssuer
) -> None:
    policies = POLICIES.format(issuer=issuer.url)
    with run_service(tmp_path, issuers=[issuer.trustpub_issuer()], policies=policies) as svc:
        cargo = Cargo(tmp_path / "cargo-home", f"sparse+{svc.url}/index/")
        work = tmp_path / "work"
        work.mkdir()
        registry_cli(svc, "user", "add", "alice")
        registry_cli(svc, "user", "add", "bob")
        alice = registry_cli(
            svc, "token", "create", "--user", "alice",
            "--scope", "publish-new", "--scope", "publish-update", "--scope", "yank",
        )  # fmt: skip

        # 1. The first version, published by a person with an API token. A category
        # the registry does not offer is dropped, and cargo says so.
        demo1 = make_package(
            work,
            "tp-demo",
            "0.1.0",
            package_extra='categories = ["algorithms", "no-such-category"]\nkeywords = ["Demo"]\n',
        )
        published = cargo.ok(demo1, "publish", "--registry", "trustpub", "--no-verify", token=alice)
        assert "not valid category slugs" in published
        assert "no-such-category" in published
        crate = httpx.get(f"{svc.url}/api/v1/crates/tp-demo").json()["crate"]
        assert (crate["categories"], crate["keywords"]) == (["algorithms"], ["demo"])

        # 2. CI exchanges its OIDC token for a trustpub token.
        jwt = issuer.mint(svc.audience)
        response = httpx.post(f"{svc.url}/api/v1/trusted_publishing/tokens", json={"jwt": jwt})
        assert response.status_code == 200, response.text
        minted = response.json()["token"]

        # 3. What the policy allows succeeds.
        demo2 = make_package(work, "tp-demo", "0.2.0")
        cargo.ok(demo2, "publish", "--registry", "trustpub", "--no-verify", token=minted)
        version = httpx.get(f"{svc.url}/api/v1/crates/tp-demo/0.2.0").json()["version"]
        assert version["trustpub_data"]["repository"] == "octo-org/octo-lib"
        assert version["trustpub_data"]["provider"] == "github"
        assert version["trustpub_data"]["run_id"]

        yank = ("yank", "--registry", "trustpub", "--version", "0.1.0", "tp-demo")
        cargo.ok(work, *yank, token=minted)
        assert index_lines(svc, "tp/-d/tp-demo")[0]["yanked"] is True
        cargo.ok(work, *yank, "--undo", token=minted)
        assert index_lines(svc, "tp/-d/tp-demo")[0]["yanked"] is False

        owner = ("owner", "--registry", "trustpub")
        added = cargo.ok(work, *owner, "--add", "bob", "tp-demo", token=minted)
        assert "user bob has been invited to be an owner of crate tp-demo" in added
        assert owners(svc, "tp-demo") == ["alice"]
        bob = registry_cli(svc, "token", "create", "--user", "bob", "--scope", "change-owners")
        accept_invitation(svc, bob, "tp-demo")
        assert owners(svc, "tp-demo") == ["alice", "bob"]
        cargo.ok(work, *owner, "--remove", "bob", "tp-demo", token=minted)
        assert owners(svc, "tp-demo") == ["alice"]

        # A new crate through trusted publishing, owned by the policy's owners.
        fresh = make_package(work, "tp-fresh", "1.0.0")
        cargo.ok(fresh, "publish", "--registry", "trustpub", "--no-verify", token=minted)
        assert owners(svc, "tp-fresh") == ["alice"]

        # 4. A second crate depends on the first (renamed in its manifest); a consumer
        # builds from the registry.
        app = make_package(
            work,
            "tp-app",
            "0.1.0",
            deps='demo = { package = "tp-demo", version = "0.2", registry = "trustpub" }\n',
            code="pub fn double() -> u32 { demo::answer() * 2 }\n",
        )
        cargo.ok(app, "publish", "--registry", "trustpub", "--no-verify", token=alice)
        # What cargo sent is listed under the crate it names, both ways.
        deps = httpx.get(f"{svc.url}/api/v1/crates/tp-app/0.1.0/dependencies").json()
        assert [(d["crate_id"], d["req"]) for d in deps["dependencies"]] == [("tp-demo", "^0.2")]
        rev = httpx.get(f"{svc.url}/api/v1/crates/tp-demo/reverse_dependencies").json()
        assert [v["crate"] for v in rev["versions"]] == ["tp-app"]
        assert rev["meta"] == {"total": 1}
        # A crate without a license is refused, and cargo shows why.
        unlicensed = make_package(work, "tp-unlicensed", "0.1.0")
        manifest = unlicensed / "Cargo.toml"
        manifest.write_text(manifest.read_text().replace('license = "MIT"\n', ""))
        stderr = cargo.fails(
            unlicensed, "publish", "--registry", "trustpub", "--no-verify", token=alice
        )
        assert "missing or empty metadata fields: license." in stderr
        consumer = make_package(
            work,
            "consumer",
            "0.0.0",
            deps='tp-app = { version = "0.1", registry = "trustpub" }\n',
            code="pub fn quadruple() -> u32 { tp_app::double() * 2 }\n",
        )
        cargo.ok(consumer, "fetch")
        built = cargo.ok(consumer, "build", "--offline")
        assert "Compiling tp-demo v0.2.0" in built
        assert "Compiling tp-app v0.1.0" in built
        # Only our registry was ever contacted: no crates.io index in CARGO_HOME.
        indexes = [p.name for p in (cargo.home / "registry" / "index").iterdir()]
        assert indexes
        assert not [name for name in indexes if "crates.io" in name]

        # 5. What the policy does not allow is refused with the registry's message.
        stderr = cargo.fails(work, "yank", "--registry", "trustpub", "--version", "0.1.0",
                             "tp-app", token=minted)  # fmt: skip
        assert "The provided access token is not valid for crate `tp-app`" in stderr
        other = make_package(work, "tp-other", "0.1.0")
        stderr = cargo.fails(
            other, "publish", "--registry", "trustpub", "--no-verify", token=minted
        )
        assert "Trusted Publishing tokens do not support creating new crates" in stderr

        # trustpub_only: the owners turn it on, and API tokens can no longer publish.
        alice_settings = registry_cli(
            svc, "token", "create", "--user", "alice", "--scope", "trusted-publishing"
        )
        response = httpx.patch(
            f"{svc.url}/api/v1/crates/tp-demo",
            json={"crate": {"trustpub_only": True}},
            headers={"Authorization": alice_settings},
        )
        assert response.status_code == 200, response.text
        demo3 = make_package(work, "tp-demo", "0.3.0")
        stderr = cargo.fails(demo3, "publish", "--registry", "trustpub", "--no-verify",
                             token=alice)  # fmt: skip
        assert "Trusted Publishing is required for crate `tp-demo`" in stderr

        # 6. Revoked, the token is refused.
        revoked = httpx.delete(
            f"{svc.url}/api/v1/trusted_publishing/tokens",
            headers={"Authorization": f"Bearer {minted}"},
        )
        assert revoked.status_code == 204
        stderr = cargo.fails(work, *yank, token=minted)
        assert "Trusted Publishing token is invalid, expired or revoked" in stderr


@pytest.mark.parametrize("downloads", ["stream", "redirect"])
def test_cargo_publishes_and_downloads_through_the_s3_backend(
    tmp_path: Path, s3_server: S3Server, issuer: DevIssuer, downloads: str
) -> None:
    """Real cargo against ``trustpub serve`` whose files live in the S3 emulator: the
    .crate lands in the bucket, and cargo fetches it streamed or redirected."""
    storage = s3_server.storage(prefix="prod")
    bucket, _ = storage.s3_location()
    s3 = storage.s3
    config = (
        f'[registry]\nstorage = "{storage.url}"\ndownloads = "{downloads}"\n'
        f'[registry.s3]\nendpoint_url = "{s3.endpoint_url}"\nregion = "{s3.region}"\n'
        f'addressing_style = "{s3.addressing_style}"\n'
    )
    # The credentials from the standard AWS variables, as a deployment would pass them.
    aws = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    with run_service(
        tmp_path, issuers=[issuer.trustpub_issuer()], extra_config=config, env=aws
    ) as svc:
        cargo = Cargo(tmp_path / "cargo-home", f"sparse+{svc.url}/index/")
        work = tmp_path / "work"
        work.mkdir()
        registry_cli(svc, "user", "add", "alice")
        alice = registry_cli(svc, "token", "create", "--user", "alice", "--scope", "publish-new")
        lib = make_package(work, "tp-stored", "1.0.0")
        cargo.ok(lib, "publish", "--registry", "trustpub", "--no-verify", token=alice)
        assert s3_server.keys(bucket) == ["prod/crates/tp_stored/tp_stored-1.0.0.crate"]
        assert not (svc.config.parent / "data" / "registry" / "crates").exists()
        consumer = make_package(
            work, "consumer", "0.0.0", deps='tp-stored = { version = "1", registry = "trustpub" }\n'
        )
        cargo.ok(consumer, "fetch")
        built = cargo.ok(consumer, "build", "--offline")
        assert "Compiling tp-stored v1.0.0" in built
        download = httpx.get(
            f"{svc.url}/api/v1/crates/tp-stored/1.0.0/download", follow_redirects=False
        )
        assert download.status_code == (302 if downloads == "redirect" else 200)
        assert SECRET_KEY not in svc.output()
