"""Categories and keywords, as crates.io has them: checked on publish (unknown
categories dropped and named in the answer's warnings), listed and shown at
/api/v1/categories and /api/v1/keywords, filtering and ordering the crate search, and
filled from the crates' JSON columns when a database of migration 4 is migrated.
Every registry test here runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.pg import create_database, drop_database
from tests.registry.conftest import PUBLIC_URL, FakeAuthority, RegistryEnv, detail
from tests.registry.helpers import metadata
from trustpub.config import load_settings
from trustpub.errors import ConfigurationError
from trustpub.registry import create_registry_app
from trustpub.registry.categories import default_categories, load_categories
from trustpub.registry.db import RegistryDB
from trustpub.registry.db.postgresql import PostgreSQLEngine
from trustpub.registry.db.schema import SQLITE_MIGRATIONS
from trustpub.registry.db.sqlite import SQLiteEngine
from trustpub.registry.errors import RegistryRefused
from trustpub.registry.publish import parse_metadata

CATEGORY_KEYS = {"id", "category", "slug", "description", "crates_cnt", "created_at"}
KEYWORD_KEYS = {"id", "keyword", "crates_cnt", "created_at"}


@pytest.fixture
def alice(env: RegistryEnv) -> str:
    env.user("alice")
    return env.token("alice")


def get(env: RegistryEnv, path: str, **params: Any) -> httpx.Response:
    response: httpx.Response = env.client.get(path, params=params)
    return response


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["name"] for c in response.json()["crates"]]


def set_times(env: RegistryEnv, crate: str, created: int, updated: int) -> None:
    """Backdate a crate (publishes in one test share a second)."""
    env.registry.db.call(
        lambda c: c.execute(
            "UPDATE crates SET created_at = ?, updated_at = ? WHERE name = ?",
            (created, updated, crate),
        )
    )


# -- publish ---------------------------------------------------------------------------------


def test_unknown_categories_are_dropped_and_named_in_the_publish_warnings(
    env: RegistryEnv, alice: str
) -> None:
    asked = ["algorithms", "no-such-category", "development-tools::testing", "algorithms"]
    response = env.publish(alice, "demo", "1.0.0", categories=asked)
    assert response.status_code == 200
    assert response.json() == {
        "warnings": {
            "invalid_categories": ["no-such-category"],
            "invalid_badges": [],
            "other": [],
        }
    }
    crate = get(env, "/api/v1/crates/demo").json()
    assert crate["crate"]["categories"] == ["algorithms", "development-tools::testing"]
    assert [c["slug"] for c in crate["categories"]] == crate["crate"]["categories"]
    # A category's slug matches exactly, as on crates.io.
    response = env.publish(alice, "demo", "1.1.0", categories=["Algorithms"])
    assert response.json()["warnings"]["invalid_categories"] == ["Algorithms"]
    assert get(env, "/api/v1/crates/demo").json()["crate"]["categories"] == []


def test_more_than_five_categories_are_refused(env: RegistryEnv, alice: str) -> None:
    six = ["algorithms", "caching", "config", "email", "games", "gui"]
    response = env.publish(alice, "demo", "1.0.0", categories=six)
    assert response.status_code == 400
    assert detail(response) == "Too many categories: 6 (max 5 per crate)"
    assert env.crate_files() == []


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (["a", "b", "c", "d", "e", "f"], "Too many keywords: 6 (max 5 per crate)"),
        (["x" * 21], "Invalid keyword `xxxxxxxxxxxxxxxxxxxxx`: longer than 20 characters"),
        (["two words"], "Invalid keyword `two words`: expected ASCII letters, digits"),
        (["-leading"], "Invalid keyword `-leading`: expected ASCII"),
        (["_leading"], "Invalid keyword `_leading`: expected ASCII"),
        (["caf\u00e9"], "Invalid keyword `caf\u00e9`: expected ASCII"),
        ([""], "Invalid keyword ``: expected ASCII"),
        (["a.b"], "Invalid keyword `a.b`: expected ASCII"),
    ],
)
def test_bad_keywords_are_refused_naming_the_first_bad_one(
    keywords: list[str], message: str
) -> None:
    with pytest.raises(RegistryRefused) as refused:
        parse_metadata(metadata("demo", "1.0.0", keywords=keywords))
    assert refused.value.status_code == 400
    assert refused.value.detail.startswith(message)


def test_good_keywords_are_kept_in_lower_case_once_each() -> None:
    kept = ["c++", "crates-io_index", "1password", "x" * 20, "CLI", "cli"]
    parsed = parse_metadata(metadata("demo", "1.0.0", keywords=kept[:5]))
    assert parsed.keywords == ("c++", "crates-io_index", "1password", "x" * 20, "cli")
    assert parse_metadata(metadata("demo", "1.0.0", keywords=kept[4:])).keywords == ("cli",)


def test_a_publish_with_a_bad_keyword_stores_nothing(env: RegistryEnv, alice: str) -> None:
    response = env.publish(alice, "demo", "1.0.0", keywords=["ok", "not ok"])
    assert response.status_code == 400
    assert "Invalid keyword `not ok`" in detail(response)
    assert get(env, "/api/v1/crates/demo").status_code == 404
    assert get(env, "/api/v1/keywords").json() == {"keywords": [], "meta": {"total": 0}}


# -- the categories and keywords APIs --------------------------------------------------------


@pytest.fixture
def catalogue(env: RegistryEnv, alice: str) -> None:
    """Three crates: two in development-tools (one through its subcategory), keywords
    shared unevenly."""
    for name, categories, keywords in (
        ("alpha", ["development-tools"], ["CLI", "parser"]),
        ("beta", ["development-tools::testing", "algorithms"], ["cli"]),
        ("gamma", ["algorithms"], ["cli", "async"]),
    ):
        response = env.publish(alice, name, "1.0.0", categories=categories, keywords=keywords)
        assert response.status_code == 200, response.text


def test_categories_list_top_level_categories_paged_and_sorted(
    env: RegistryEnv, catalogue: None
) -> None:
    shipped = default_categories()
    top = sorted(shipped.toplevel(), key=lambda c: c.name.casefold())
    first = get(env, "/api/v1/categories", per_page=3).json()
    assert first["meta"] == {"total": len(top)}
    assert [c["slug"] for c in first["categories"]] == [c.slug for c in top[:3]]
    assert all(set(c) == CATEGORY_KEYS for c in first["categories"])
    assert all(c["id"] == c["slug"] for c in first["categories"])
    second = get(env, "/api/v1/categories", per_page=3, page=2).json()
    assert [c["slug"] for c in second["categories"]] == [c.slug for c in top[3:6]]
    assert len(get(env, "/api/v1/categories", per_page=100).json()["categories"]) == len(top)

    by_crates = get(env, "/api/v1/categories", sort="crates", per_page=3).json()["categories"]
    # development-tools counts the crate of its subcategory too; ties are alphabetical.
    assert [(c["slug"], c["crates_cnt"]) for c in by_crates] == [
        ("algorithms", 2),
        ("development-tools", 2),
        ("api-bindings", 0),
    ]
    algorithms = shipped.get("algorithms")
    assert algorithms is not None
    assert (by_crates[0]["category"], by_crates[0]["description"]) == (
        "Algorithms",
        algorithms.description,
    )


def test_a_category_shows_its_subcategories_and_parents(env: RegistryEnv, catalogue: None) -> None:
    tools = get(env, "/api/v1/categories/development-tools").json()["category"]
    assert set(tools) == CATEGORY_KEYS | {"subcategories", "parent_categories"}
    assert tools["crates_cnt"] == 2
    assert tools["parent_categories"] == []
    testing = next(s for s in tools["subcategories"] if s["slug"] == "development-tools::testing")
    assert testing["category"] == "Development tools::Testing"
    assert testing["crates_cnt"] == 1
    shown = get(env, "/api/v1/categories/development-tools::testing").json()["category"]
    assert shown["subcategories"] == []
    assert [p["slug"] for p in shown["parent_categories"]] == ["development-tools"]
    # Asked in another case, found (crates.io lowers the slug).
    assert get(env, "/api/v1/categories/Algorithms").json()["category"]["slug"] == "algorithms"
    slugs = get(env, "/api/v1/category_slugs").json()["category_slugs"]
    assert [s["slug"] for s in slugs] == sorted(default_categories().slugs())
    algorithms = default_categories().get("algorithms")
    assert algorithms is not None
    assert slugs[0] == {
        "id": "algorithms",
        "slug": "algorithms",
        "description": algorithms.description,
    }
    missing = get(env, "/api/v1/categories/no-such-category")
    assert missing.status_code == 404
    assert detail(missing) == "category `no-such-category` does not exist"


def test_keywords_are_listed_paged_and_sorted_and_shown(env: RegistryEnv, catalogue: None) -> None:
    listed = get(env, "/api/v1/keywords").json()
    assert listed["meta"] == {"total": 3}
    assert [k["keyword"] for k in listed["keywords"]] == ["async", "cli", "parser"]
    assert all(set(k) == KEYWORD_KEYS and k["id"] == k["keyword"] for k in listed["keywords"])
    by_crates = get(env, "/api/v1/keywords", sort="crates", per_page=2).json()
    assert [(k["keyword"], k["crates_cnt"]) for k in by_crates["keywords"]] == [
        ("cli", 3),
        ("async", 1),
    ]
    assert by_crates["meta"] == {"total": 3}
    page2 = get(env, "/api/v1/keywords", sort="crates", per_page=2, page=2).json()
    assert [k["keyword"] for k in page2["keywords"]] == ["parser"]
    shown = get(env, "/api/v1/keywords/CLI").json()["keyword"]
    assert (shown["keyword"], shown["crates_cnt"]) == ("cli", 3)
    missing = get(env, "/api/v1/keywords/nope")
    assert missing.status_code == 404
    assert detail(missing) == "keyword `nope` does not exist"


def test_a_republish_replaces_the_crates_keywords_and_categories(
    env: RegistryEnv, alice: str, catalogue: None
) -> None:
    env.publish(alice, "gamma", "1.1.0", categories=["games"], keywords=["parser"])
    counts = {
        k["keyword"]: k["crates_cnt"] for k in get(env, "/api/v1/keywords").json()["keywords"]
    }
    assert counts == {"async": 0, "cli": 2, "parser": 2}
    algorithms = get(env, "/api/v1/categories/algorithms").json()["category"]
    assert algorithms["crates_cnt"] == 1


def test_the_crate_answer_carries_its_keyword_and_category_objects(
    env: RegistryEnv, catalogue: None
) -> None:
    body = get(env, "/api/v1/crates/beta").json()
    assert body["crate"]["keywords"] == ["cli"]
    assert [(k["keyword"], k["crates_cnt"]) for k in body["keywords"]] == [("cli", 3)]
    assert [(c["slug"], c["crates_cnt"]) for c in body["categories"]] == [
        ("development-tools::testing", 1),
        ("algorithms", 2),
    ]
    assert all(set(c) == CATEGORY_KEYS for c in body["categories"])


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/v1/categories", {"sort": "downloads"}, "`sort` must be one of alpha, crates"),
        ("/api/v1/keywords", {"sort": "x"}, "`sort` must be one of alpha, crates"),
        ("/api/v1/crates", {"sort": "popular"}, "`sort` must be one of relevance, downloads"),
        ("/api/v1/categories", {"page": "0"}, "`page` must be an integer from 1 to 10000"),
        ("/api/v1/keywords", {"per_page": "101"}, "`per_page` must be an integer from 1 to 100"),
        ("/api/v1/crates", {"per_page": "x"}, "`per_page` must be an integer from 1 to 100"),
    ],
)
def test_bad_sort_and_page_parameters_are_refused(
    env: RegistryEnv, path: str, params: dict[str, str], message: str
) -> None:
    response = get(env, path, **params)
    assert response.status_code == 400
    assert detail(response).startswith(message)


# -- search ----------------------------------------------------------------------------------


def test_search_filters_by_category_with_its_subcategories_and_by_keyword(
    env: RegistryEnv, catalogue: None
) -> None:
    assert names(get(env, "/api/v1/crates", category="development-tools")) == ["alpha", "beta"]
    assert names(get(env, "/api/v1/crates", category="development-tools::testing")) == ["beta"]
    assert names(get(env, "/api/v1/crates", category="algorithms")) == ["beta", "gamma"]
    assert names(get(env, "/api/v1/crates", category="no-such-category")) == []
    assert get(env, "/api/v1/crates", category="nope").json()["meta"] == {"total": 0}
    assert names(get(env, "/api/v1/crates", keyword="CLI")) == ["alpha", "beta", "gamma"]
    assert names(get(env, "/api/v1/crates", keyword="async")) == ["gamma"]
    assert names(get(env, "/api/v1/crates", keyword="caf\u00e9")) == []
    both = get(env, "/api/v1/crates", category="algorithms", keyword="async", q="a")
    assert names(both) == ["gamma"]
    assert both.json()["meta"] == {"total": 1}
    paged = get(env, "/api/v1/crates", keyword="cli", per_page=2, page=2)
    assert names(paged) == ["gamma"]
    assert paged.json()["meta"] == {"total": 3}


def test_search_sorts_as_crates_io(env: RegistryEnv, alice: str) -> None:
    for name in ("mid", "old", "new-one", "mid-match"):
        assert env.publish(alice, name, "1.0.0").status_code == 200
    set_times(env, "old", created=1_000, updated=4_000)
    set_times(env, "mid", created=2_000, updated=2_000)
    set_times(env, "mid-match", created=2_000, updated=1_000)
    set_times(env, "new-one", created=3_000, updated=3_000)
    crates = "/api/v1/crates"
    assert names(get(env, crates)) == ["mid", "mid-match", "new-one", "old"]
    assert names(get(env, crates, sort="alpha")) == ["mid", "mid-match", "new-one", "old"]
    assert names(get(env, crates, sort="new")) == ["new-one", "mid", "mid-match", "old"]
    assert names(get(env, crates, sort="recent-updates")) == ["old", "new-one", "mid", "mid-match"]
    # relevance (the default with a query): the exact name first, then by name.
    assert names(get(env, crates, q="match")) == ["mid-match"]
    assert names(get(env, crates, q="mid-match", sort="relevance")) == ["mid-match"]
    assert names(get(env, crates, q="MID")) == ["mid", "mid-match"]
    assert names(get(env, crates, q="i", sort="new")) == ["mid", "mid-match"]
    # Download counts are not kept yet: every crate has 0, so the name order.
    for sort in ("downloads", "recent-downloads"):
        assert names(get(env, crates, sort=sort)) == ["mid", "mid-match", "new-one", "old"]


def test_relevance_puts_the_exact_name_first(env: RegistryEnv, alice: str) -> None:
    for name in ("serde-extra", "aserde", "serde"):
        env.publish(alice, name, "1.0.0")
    assert names(get(env, "/api/v1/crates", q="serde")) == ["serde", "aserde", "serde-extra"]
    assert names(get(env, "/api/v1/crates", q="serde", sort="alpha")) == [
        "aserde",
        "serde",
        "serde-extra",
    ]


# -- a registry's own category list ------------------------------------------------------------

CUSTOM = """
[tools]
name = "Tools"
description = "Our tools."

["tools::build"]
name = "Build"

[services]
name = "Services"
"""


def test_a_custom_category_list_replaces_the_shipped_one(
    tmp_path: Path, database: str | None
) -> None:
    path = tmp_path / "categories.toml"
    path.write_text(CUSTOM)
    config = tmp_path / "trustpub.toml"
    config.write_text(f'[registry]\ncategories = "{path}"\n')
    categories = load_settings(config, environ={}).registry_categories
    assert categories is not None
    app = create_registry_app(
        tmp_path / "data", PUBLIC_URL, authority=FakeAuthority(), database=database,
        categories=categories,
    )  # fmt: skip
    with TestClient(app) as client:
        env = RegistryEnv(client, app.state.registry, FakeAuthority(), tmp_path)
        env.user("alice")
        token = env.token("alice")
        response = env.publish(token, "demo", "1.0.0", categories=["tools::build", "algorithms"])
        assert response.json()["warnings"]["invalid_categories"] == ["algorithms"]
        listed = get(env, "/api/v1/categories").json()
        assert listed["meta"] == {"total": 2}
        assert [(c["slug"], c["category"], c["crates_cnt"]) for c in listed["categories"]] == [
            ("services", "Services", 0),
            ("tools", "Tools", 1),
        ]
        build = get(env, "/api/v1/categories/tools::build").json()["category"]
        assert (build["category"], build["description"]) == ("Tools::Build", "")
        assert get(env, "/api/v1/categories/algorithms").status_code == 404


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["a::b"]\nname = "B"\n', "[a::b]: its parent category `a` is not defined"),
        ('[Upper]\nname = "U"\n', "[Upper]: a slug is lower-case ASCII letters"),
        ('["a b"]\nname = "U"\n', "[a b]: a slug is lower-case ASCII letters"),
        ("[a]\n", "[a]: name: expected a non-empty string"),
        ('[a]\nname = "A::B"\n', "[a]: name: expected a non-empty string without `::`"),
        ('[a]\nname = "A"\ncolour = 1\n', "[a]: unknown key(s): colour"),
        ('[a]\nname = "A"\ndescription = 3\n', "[a]: description: expected a string"),
        ('a = "b"\n', "[a]: expected a table"),
        ("[a\n", "invalid TOML"),
    ],
)
def test_a_bad_category_file_stops_the_start_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "categories.toml"
    path.write_text(text)
    config = tmp_path / "trustpub.toml"
    config.write_text(f'[registry]\ncategories = "{path}"\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config, environ={})
    assert caught.value.detail.startswith(f"{config}: registry.categories: {path}: ")
    assert message in caught.value.detail


def test_a_missing_category_file_or_a_bad_setting_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "trustpub.toml"
    config.write_text(f'[registry]\ncategories = "{tmp_path / "nope.toml"}"\n')
    with pytest.raises(ConfigurationError, match="category file not found"):
        load_settings(config, environ={})
    config.write_text("[registry]\ncategories = 1\n")
    with pytest.raises(ConfigurationError, match="expected the path of a TOML file"):
        load_settings(config, environ={})


def test_the_shipped_list_has_crates_io_slugs() -> None:
    shipped = default_categories()
    assert len(shipped) == 73
    client = shipped.get("web-programming::http-client")
    assert client is not None
    assert client.name == "Web programming::HTTP client"
    source = Path(__file__).parents[2] / "trustpub" / "registry" / "categories.toml"
    assert load_categories(source).slugs() == shipped.slugs()


# -- the migration fills the tables from the JSON columns --------------------------------------

STAGE_4 = SQLITE_MIGRATIONS[:4]


@pytest.fixture
def fresh_location(tmp_path: Path, engine: str) -> Iterator[str]:
    """A database no migration has touched: a new SQLite file or PostgreSQL database."""
    if engine == "sqlite":
        yield str(tmp_path / "registry.db")
        return
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def test_migrating_a_database_of_migration_4_fills_the_tables_from_the_json_columns(
    fresh_location: str, engine: str
) -> None:
    old = (
        SQLiteEngine(Path(fresh_location), migrations=STAGE_4)
        if engine == "sqlite"
        else PostgreSQLEngine(fresh_location, migrations=STAGE_4)
    )
    old.open()
    rows = [
        # What earlier publishes stored: mixed case, repeats, a category no list has,
        # and JSON that is not a list of strings.
        ("one", ["CLI", "cli", "Parser"], ["algorithms", "not-listed", "algorithms"], 100),
        ("two", ["cli"], ["development-tools::testing"], 50),
        ("three", [], [], 70),
        ("four", ["async", 7, ""], [3, "games"], 80),
    ]

    def fill(conn: Any) -> None:
        for name, keywords, categories, created in rows:
            conn.execute(
                "INSERT INTO crates (name, canonical, keywords, categories, created_at,"
                " updated_at, index_updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, name, json.dumps(keywords), json.dumps(categories), created, created, 0),
            )
        conn.execute(
            "INSERT INTO crates (name, canonical, keywords, categories, created_at,"
            " updated_at, index_updated_at) VALUES ('odd', 'odd', '{}', '\"x\"', 1, 1, 0)"
        )

    old.run(fill)
    old.close()

    db = RegistryDB(fresh_location)
    db.open()
    try:
        keywords, total = db.keywords(False, 10, 0)
        assert total == 3
        # Lower-cased once each, first seen with the oldest crate naming them; what is
        # not a non-empty string is left out.
        assert [(k.keyword, k.crates_cnt, k.created_at) for k in keywords] == [
            ("async", 1, 80),
            ("cli", 2, 50),
            ("parser", 1, 100),
        ]
        counts, _ = db.category_stats()
        assert counts == {
            "algorithms": 1,
            "not-listed": 1,
            "development-tools::testing": 1,
            "games": 1,
        }
        # The JSON columns stay as they were.
        one = db.crate("one")
        assert one is not None
        assert one.keywords == ("CLI", "cli", "Parser")
        found, _ = db.search("", 10, 0, keyword="cli")
        assert [c.name for c in found] == ["one", "two"]
        found, _ = db.search("", 10, 0, categories=("algorithms",))
        assert [c.name for c in found] == ["one"]
    finally:
        db.close()
