from pathlib import Path

import pytest

from trustpub.config import (
    Settings,
    audience_for,
    issuer_spec,
    load_settings,
    parse_duration,
    parse_host_port,
    parse_issuer_spec,
)
from trustpub.errors import ConfigurationError
from trustpub.oidc.issuers import DEFAULT_ISSUERS, Issuer


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trustpub.toml"
    path.write_text(text)
    return path


def test_no_configuration_gives_the_embedded_localhost_default() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.store_url.startswith("sqlite:///")
    assert settings.policy_dir == Path("policies")
    assert settings.audience == "localhost:8080"
    assert settings.issuers == DEFAULT_ISSUERS


def test_audience_defaults_to_the_public_url_without_its_scheme(tmp_path: Path) -> None:
    path = write(tmp_path, 'public_url = "https://registry.example/"\n')
    settings = load_settings(path, environ={})
    assert settings.public_url == "https://registry.example"
    assert settings.audience == "registry.example"


def test_explicit_audience_overrides_the_derived_one(tmp_path: Path) -> None:
    path = write(tmp_path, 'public_url = "https://registry.example"\naudience = "custom"\n')
    assert load_settings(path, environ={}).audience == "custom"


@pytest.mark.parametrize(
    ("url", "audience"),
    [
        ("https://reg.example", "reg.example"),
        ("http://localhost:3000", "localhost:3000"),
        ("https://reg.example/sub/", "reg.example/sub"),
    ],
)
def test_audience_for_strips_the_scheme_as_the_action_does(url: str, audience: str) -> None:
    assert audience_for(url) == audience


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "127.0.0.1:9000"\nstore = "sqlite:///a.db"\n')
    settings = load_settings(
        path,
        environ={
            "TRUSTPUB_STORE": "redis://127.0.0.1:6379/0",
            "TRUSTPUB_MAX_TOKEN_TTL": "2h",
            "TRUSTPUB_INTROSPECTION_CREDENTIALS": "a" * 20 + ", " + "b" * 20,
            "TRUSTPUB_ISSUERS": "github=http://127.0.0.1:9999+dev",
        },
    )
    assert settings.port == 9000
    assert settings.public_url == "http://localhost:9000"
    assert settings.store_url == "redis://127.0.0.1:6379/0"
    assert settings.max_token_ttl == 7200
    assert settings.introspection_credentials == ("a" * 20, "b" * 20)
    assert settings.issuers == (Issuer("http://127.0.0.1:9999", "github", development=True),)


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_level = "DEBUG"\n')
    assert load_settings(environ={"TRUSTPUB_CONFIG": str(path)}).log_level == "debug"


def test_issuers_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[issuers]]
url = "https://ghe.example/_services/token"
provider = "github"

[[issuers]]
url = "https://gitlab.example"
provider = "gitlab"
""",
    )
    settings = load_settings(path, environ={})
    assert [i.url for i in settings.issuers] == [
        "https://ghe.example/_services/token",
        "https://gitlab.example",
    ]
    assert settings.issuer("https://gitlab.example") == Issuer("https://gitlab.example", "gitlab")
    assert settings.issuer("https://gitlab.com") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = 1\n", "unknown key(s): nonsense"),
        ("listen = 8080\n", "listen: expected str"),
        ('listen = "localhost"\n', "listen: expected HOST:PORT"),
        ('listen = "localhost:99999"\n', "listen: expected HOST:PORT"),
        ('public_url = "ftp://x"\n', "public_url: expected an http(s) URL"),
        ('audience = " "\n', "audience: must not be empty"),
        ('max_token_ttl = "forever"\n', "max_token_ttl: expected a duration"),
        ("max_token_ttl = 0\n", "max_token_ttl: must be longer than zero seconds"),
        ("max_token_ttl = true\n", "max_token_ttl: expected seconds (an integer)"),
        ("jwt_leeway = 1000\n", "jwt_leeway: expected 0..300"),
        ('log_level = "loud"\n', "log_level: expected one of"),
        ('introspection_credentials = ["short"]\n', "16 characters or more"),
        ('introspection_credentials = ["sha256:abc"]\n', "sha256:<64 hex digits>"),
        ("issuers = []\n", "issuers: expected a non-empty list"),
        ('[[issuers]]\nurl = "https://x.example"\nprovider = "jenkins"\n', "provider: expected"),
        ('[[issuers]]\nurl = "http://x.example"\nprovider = "github"\n', "must use https"),
        (
            '[[issuers]]\nurl = "http://x.example"\nprovider = "github"\ndevelopment = true\n',
            "must use https",
        ),
        ('[[issuers]]\nurl = "https://x.example"\nprovider = "github"\nextra = 1\n', "extra"),
        (
            '[[issuers]]\nurl = "https://x.example"\nprovider = "github"\n'
            '[[issuers]]\nurl = "https://x.example"\nprovider = "gitlab"\n',
            "listed twice",
        ),
        ("[key_sets]\nmax_age = -5\n", "key_sets.max_age"),
        ("[key_sets]\nttl = 5\n", "key_sets: unknown key(s): ttl"),
        ('[key_sets]\nmax_age = "2h"\nmax_stale = "1h"\n', "max_stale (3600 s) must be at least"),
        ("[registry]\nenabled = 1\n", "registry.enabled: expected true or false"),
        ('[registry]\nauth_required = "yes"\n', "registry.auth_required: expected true or false"),
        (
            '[registry]\nrequire_metadata = "no"\n',
            "registry.require_metadata: expected true or false",
        ),
        ('[registry]\nlogin_url = "ftp://x"\n', "registry.login_url: expected an http(s) URL"),
        ('[registry]\nlogin_url = "https://x/\\"a"\n', "registry.login_url: expected"),
        ('[registry]\nlogin_url = "https://x/é"\n', "registry.login_url: expected"),
        ('[registry]\ninvitation_ttl = "10m"\n', "registry.invitation_ttl: expected 1h to 366d"),
        ('[registry]\ninvitation_ttl = "soon"\n', "registry.invitation_ttl"),
        ("policy_reload_interval = -1\n", "policy_reload_interval"),
        ("this is not toml\n", "invalid TOML"),
    ],
)
def test_bad_configuration_is_refused_with_one_clear_message(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as exc:
        load_settings(path, environ={})
    assert message in exc.value.detail
    assert str(path) in exc.value.detail


def test_missing_configuration_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="file not found"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_bad_environment_issuer_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="expected KIND=URL"):
        load_settings(environ={"TRUSTPUB_ISSUERS": "https://x.example"})


@pytest.mark.parametrize(("value", "seconds"), [(90, 90), ("90s", 90), ("45m", 2700), ("2h", 7200)])
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value, "x") == seconds


def test_max_token_ttl_from_the_environment_in_plain_seconds() -> None:
    assert load_settings(environ={"TRUSTPUB_MAX_TOKEN_TTL": "5400"}).max_token_ttl == 5400


def test_hashed_introspection_credentials_are_accepted(tmp_path: Path) -> None:
    digest = "0" * 64
    path = write(tmp_path, f'introspection_credentials = ["sha256:{digest}"]\n')
    assert load_settings(path, environ={}).introspection_credentials == (f"sha256:{digest}",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:443", ("::1", 443)),
        ("h:65535", ("h", 65535)),
    ],
)
def test_host_port_is_read_one_way(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value, "--listen") == expected


@pytest.mark.parametrize("value", ["8080", ":8080", "h:", "h:x", "h:65536", "h:-1", "h:0"])
def test_bad_host_port_is_refused_naming_where(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^--listen: expected HOST:PORT"):
        parse_host_port(value, "--listen")


def test_port_zero_only_where_a_free_port_is_wanted() -> None:
    assert parse_host_port("127.0.0.1:0", "--listen", allow_port_zero=True) == ("127.0.0.1", 0)


def test_issuer_specs_mark_development_with_plus_dev_only() -> None:
    dev = parse_issuer_spec("github=http://127.0.0.1:8090+dev", "x")
    assert dev == Issuer("http://127.0.0.1:8090", "github", development=True)
    assert parse_issuer_spec(issuer_spec(dev), "x") == dev
    ghes = parse_issuer_spec("github=https://ghe.example/_services/token", "x")
    assert ghes.development is False
    # Plain http without +dev is refused, also on loopback: development is never guessed.
    with pytest.raises(ConfigurationError, match=r"^--issuer: issuer .*must use https") as exc:
        parse_issuer_spec("github=http://127.0.0.1:8090", "--issuer")
    assert exc.value.detail.endswith("in KIND=URL form: URL+dev")


@pytest.mark.parametrize("value", ["https://x.example", "bitbucket=https://x.example", "github="])
def test_bad_issuer_specs_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^TRUSTPUB_ISSUERS: "):
        load_settings(environ={"TRUSTPUB_ISSUERS": value})


def test_an_issuer_listed_twice_in_the_environment_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="listed twice"):
        load_settings(
            environ={"TRUSTPUB_ISSUERS": "gitlab=https://g.example,gitlab=https://g.example"}
        )


def test_the_server_table_sets_processes_and_limits(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(
        '[server]\nworkers = 4\nhead_timeout = "5s"\nbody_timeout = 20\nmax_connections = 64\n'
    )
    server = load_settings(config, environ={}).server
    assert (server.workers, server.head_timeout, server.body_timeout) == (4, 5, 20)
    assert server.max_connections == 64
    assert server.keep_alive_timeout == 5  # untouched keys keep their defaults
    assert server.http == "httptools"
    config.write_text('[server]\nhttp = "h11"\n')
    assert load_settings(config, environ={}).server.http == "h11"


def test_trustpub_workers_overrides_one_key_of_the_server_table(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text("[server]\nworkers = 4\nhead_timeout = 3\n")
    server = load_settings(config, environ={"TRUSTPUB_WORKERS": "2"}).server
    assert (server.workers, server.head_timeout) == (2, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nworkers = 0\n", "server.workers: expected 1..64"),
        ("[server]\nmax_requests = true\n", "server.max_requests: expected an integer"),
        ("[server]\nhead_timeout = 0\n", "server.head_timeout"),
        ("[server]\nmax_connections = 2\n", "server.max_connections: expected 16..1000000"),
        ("[server]\nthreads = 2\n", "server: unknown key(s): threads"),
        ('[server]\nhttp = "h2"\n', "server.http: expected one of httptools, h11"),
        ('trusted_proxies = ["proxy.internal"]\n', "trusted_proxies: not an address or CIDR"),
        ('trusted_proxies = "10.0.0.1"\n', "trusted_proxies: expected a list"),
        ('forwarded_header = "x-real-ip"\n', "forwarded_header: expected one of"),
    ],
)
def test_bad_server_settings_name_their_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(config, environ={})


def test_trusted_proxies_from_the_environment() -> None:
    settings = load_settings(environ={"TRUSTPUB_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "::1")
    assert settings.forwarded_header == "x-forwarded-for"
    with pytest.raises(ConfigurationError, match="TRUSTPUB_WORKERS"):
        load_settings(environ={"TRUSTPUB_WORKERS": "-1"})


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080"])
def test_listening_on_all_interfaces_requires_an_explicit_public_url(listen: str) -> None:
    with pytest.raises(ConfigurationError, match="set public_url") as exc:
        load_settings(environ={"TRUSTPUB_LISTEN": listen})
    assert "\n" not in exc.value.detail
    settings = load_settings(
        environ={"TRUSTPUB_LISTEN": listen, "TRUSTPUB_PUBLIC_URL": "https://crates.example"}
    )
    assert settings.audience == "crates.example"


def test_a_private_registry_is_configured_in_the_registry_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[registry]\nauth_required = true\nlogin_url = "https://wiki.example/tokens"\n'
        'invitation_ttl = "7d"\nrequire_metadata = false\n',
    )
    settings = load_settings(path, environ={})
    assert settings.registry_auth_required is True
    assert settings.registry_require_metadata is False
    assert settings.registry_login_url == "https://wiki.example/tokens"
    assert settings.registry_invitation_ttl == 7 * 86400
    defaults = load_settings(environ={})
    assert (defaults.registry_auth_required, defaults.registry_login_url) == (False, None)
    assert defaults.registry_invitation_ttl == 30 * 86400
    assert defaults.registry_require_metadata is True  # crates.io's rule, by default


def test_registry_database_takes_a_postgresql_url_only(tmp_path: Path) -> None:
    assert load_settings(environ={}).registry_database is None
    url = "postgresql://trustpub@db.internal:5432/trustpub"
    config = write(tmp_path, f'[registry]\ndatabase = "{url}"\n')
    assert load_settings(config, environ={}).registry_database == url
    for bad in ('"sqlite:///x.db"', '"/var/lib/registry.db"', "1"):
        config = write(tmp_path, f"[registry]\ndatabase = {bad}\n")
        with pytest.raises(ConfigurationError, match=r"registry\.database: expected postgresql"):
            load_settings(config, environ={})
