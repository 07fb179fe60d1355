"""docker/compose.yaml, the scale-out layout, checked against the program and its docs.

scripts/test-compose runs the layout for real (Docker, minutes); these checks are
offline and fast: the configuration the replicas get loads as trustpub reads it, every
variable the compose file reads is in the example env file, the images are pinned to
Debian bookworm tags with a stand-in for each, and the README's "Scale-out with compose"
shows the compose commands scripts/test-compose runs. Plain text is read (the compose
file's few lines of interest) rather than YAML, to need no YAML library.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from trustpub.config import load_settings
from trustpub.postgres import is_postgresql_url

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = (ROOT / "docker" / "compose.yaml").read_text()
EXAMPLE_ENV = (ROOT / "docker" / "compose.env.example").read_text()
TEST_SCRIPT = (ROOT / "scripts" / "test-compose").read_text()

VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def compose_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Scale-out with compose\n")
    end = readme.index("\n## ", start)
    return readme[start:end]


def default(name: str) -> str:
    values: set[str] = {m[2] for m in VARIABLE.findall(COMPOSE) if m[0] == name and m[1] == "-"}
    assert len(values) == 1, f"{name}: defaults {values}"
    return values.pop()


def service_environment() -> dict[str, str]:
    """The trustpub service's environment, its ``${...}`` filled in as compose would."""
    block = COMPOSE.split("\n  trustpub:\n", 1)[1].split("\n    environment:\n", 1)[1]
    given = {
        "TRUSTPUB_PUBLIC_URL": "https://crates.example.com",
        "TRUSTPUB_REDIS_PASSWORD": "0123456789abcdef",
        "TRUSTPUB_DB_PASSWORD": "fedcba9876543210",
    }
    env = {}
    for line in block.split("\n"):
        if not line.startswith("      ") or line.strip().startswith("#"):
            if line.startswith("    ") and not line.startswith("      "):
                break
            continue
        name, _, value = line.strip().partition(": ")
        env[name] = VARIABLE.sub(lambda m: given.get(m[1]) or m[3], value)
    return env


def test_the_replicas_configuration_loads_as_the_scale_out_layout() -> None:
    env = service_environment()
    assert env["TRUSTPUB_CONFIG"] == "/etc/trustpub/trustpub.toml"
    settings = load_settings(ROOT / "docker" / "trustpub.toml", environ=env)
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.public_url == "https://crates.example.com"
    assert settings.registry_database is not None
    assert is_postgresql_url(settings.registry_database)
    # No password in the file: libpq reads PGPASSWORD, which compose sets.
    assert "fedcba9876543210" not in (ROOT / "docker" / "trustpub.toml").read_text()
    assert env["PGPASSWORD"] == "fedcba9876543210"
    assert settings.store_url == "redis://:0123456789abcdef@redis:6379/0"
    assert settings.trusted_proxies == (default("TRUSTPUB_PROXY_ADDRESS"),)
    assert settings.server.workers == int(default("TRUSTPUB_WORKERS"))


def test_the_trusted_proxy_is_the_proxys_fixed_address_on_the_edge_network() -> None:
    address = default("TRUSTPUB_PROXY_ADDRESS")
    assert f"ipv4_address: ${{TRUSTPUB_PROXY_ADDRESS:-{address}}}" in COMPOSE
    assert ipaddress.ip_address(address) in ipaddress.ip_network(default("TRUSTPUB_EDGE_SUBNET"))


def test_every_variable_of_the_compose_file_is_in_the_example_env_file() -> None:
    required = {m[0] for m in VARIABLE.findall(COMPOSE) if m[1] == "?"}
    optional = {m[0] for m in VARIABLE.findall(COMPOSE) if m[1] != "?"}
    assert required == {"TRUSTPUB_PUBLIC_URL", "TRUSTPUB_DB_PASSWORD", "TRUSTPUB_REDIS_PASSWORD"}
    for name in required:  # to fill in, and empty: no password is committed
        assert re.search(rf"^{name}=$", EXAMPLE_ENV, re.M), name
    for name in optional:
        assert re.search(rf"^# {name}={re.escape(default(name))}\b", EXAMPLE_ENV, re.M), name


def test_the_images_are_debian_bookworm_tags_each_with_a_stand_in() -> None:
    images = re.findall(r"^    image: ([a-z]+):(\S+)$", COMPOSE, re.M)
    assert {name for name, _ in images} == {"postgres", "redis", "nginx"}
    section = compose_section()
    for name, tag in images:
        assert tag.endswith("-bookworm"), f"{name}:{tag}"
        dockerfile = ROOT / "scripts" / "container-standins" / name / "Dockerfile"
        assert f"Stand-in for {name}:{tag} " in dockerfile.read_text()
        assert f"`{name}:{tag}`" in section


def test_the_readme_shows_the_compose_commands_the_test_runs() -> None:
    shown = set(re.findall(r"^\$compose ([a-z]+(?: -[a-zA-Z]+)*)", compose_section(), re.M))
    run = set(re.findall(r'^\s*"\$\{compose\[@\]\}" ([a-z]+(?: -[a-zA-Z]+)*)', TEST_SCRIPT, re.M))
    # `ps` and `logs` only look (and `logs` only on a failure): the README leaves them out.
    run = {command for command in run if command.split()[0] not in ("ps", "logs")}
    assert shown == run
