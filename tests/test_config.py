from pathlib import Path

import pytest

from trustpub.config import Settings, audience_for, load_settings, parse_duration
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
    with pytest.raises(ConfigurationError, match="expected provider=url"):
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


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080"])
def test_listening_on_all_interfaces_requires_an_explicit_public_url(listen: str) -> None:
    with pytest.raises(ConfigurationError, match="set public_url") as exc:
        load_settings(environ={"TRUSTPUB_LISTEN": listen})
    assert "\n" not in exc.value.detail
    settings = load_settings(
        environ={"TRUSTPUB_LISTEN": listen, "TRUSTPUB_PUBLIC_URL": "https://crates.example"}
    )
    assert settings.audience == "crates.example"
