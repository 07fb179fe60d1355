"""Browsing the registry by category and keyword, over HTTP, as crates.io serves it:
``/api/v1/categories``, ``/api/v1/categories/{slug}``, ``/api/v1/category_slugs``,
``/api/v1/keywords``, ``/api/v1/keywords/{keyword}``, the ``category=``, ``keyword=``
and ``sort=`` parameters of the crate search, and the ``categories``/``keywords``
lists of a crate.

Categories are the configured list (``trustpub.registry.categories``); the database
holds which crates name which slugs and when each slug was first offered. The list
shows top-level categories, each counting the crates of its subcategories too, as
crates.io's does. Keywords are what crates named at their last publish.

In a private registry these reads need a token, and a Trusted Publishing token is
refused, as for the search: counts and keywords tell of crates it may not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trustpub.registry.categories import Categories, Category, keyword_key
from trustpub.registry.context import RegistryContext
from trustpub.registry.db import CrateRow
from trustpub.registry.db.queries import SEARCH_SORTS
from trustpub.registry.errors import bad_request, not_found
from trustpub.registry.views import category_json, keyword_json
from trustpub.text import shown
from trustpub.web import JSONResponse, query_int

CATEGORIES = "/api/v1/categories"
CATEGORY_SLUGS = "/api/v1/category_slugs"
KEYWORDS = "/api/v1/keywords"
LIST_SORTS = ("alpha", "crates")
MAX_PER_PAGE = 100  # crates.io's


def choice(request: Request, name: str, default: str, allowed: tuple[str, ...]) -> str:
    """The query parameter ``name``, one of ``allowed`` (``default`` when absent); 400
    naming the allowed values otherwise."""
    value = request.query_params.get(name, default)
    if value not in allowed:
        raise bad_request(f"`{name}` must be one of {', '.join(allowed)}")
    return value


def page_of(request: Request) -> tuple[int, int]:
    """(limit, offset) from ``page`` and ``per_page`` (10 a page by default)."""
    per_page = query_int(request, "per_page", 10, 1, MAX_PER_PAGE)
    page = query_int(request, "page", 1, 1, 10_000)
    return per_page, (page - 1) * per_page


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """The crate search's ``sort``, ``category`` and ``keyword``: ``categories`` are the
    slugs searched (None: any; empty: none matches), ``keyword`` the stored form."""

    sort: str
    categories: tuple[str, ...] | None
    keyword: str | None
    matches_nothing: bool = False


class Browse:
    """The category and keyword endpoints of ``registry``."""

    def __init__(self, registry: RegistryContext, categories: Categories) -> None:
        self.registry = registry
        self.categories = categories

    def search_filters(self, request: Request, query: str) -> SearchFilters:
        """The search's filters and order; relevance is the default with a query, the
        name order without one (crates.io's)."""
        sort = choice(request, "sort", "relevance" if query else "alpha", SEARCH_SORTS)
        if sort == "relevance" and not query:
            sort = "alpha"
        slugs: tuple[str, ...] | None = None
        nothing = False
        category = request.query_params.get("category")
        if category is not None:
            # A category finds the crates of its subcategories too; an unknown one none.
            slugs = self.categories.under(category)
            nothing = not slugs
        key: str | None = None
        keyword = request.query_params.get("keyword")
        if keyword is not None:
            key = keyword_key(keyword)
            nothing = nothing or key is None
        return SearchFilters(sort, slugs, key, nothing)

    async def _stats(self) -> tuple[dict[str, int], dict[str, int]]:
        counts, times = await self.registry.run_db(self.registry.db.category_stats)
        rolled = {
            c.slug: sum(counts.get(s, 0) for s in self.categories.under(c.slug))
            for c in self.categories
        }
        return rolled, times

    def _json(
        self, category: Category, counts: dict[str, int], times: dict[str, int]
    ) -> dict[str, Any]:
        # Every configured slug is recorded when the registry opens; a missing time can
        # only be a list changed under a running registry.
        created = times.get(category.slug, self.registry.db.now())
        return category_json(category, counts.get(category.slug, 0), created)

    async def list_categories(self, request: Request) -> Response:
        await self.registry.check_listing(request)
        sort = choice(request, "sort", "alpha", LIST_SORTS)
        limit, offset = page_of(request)
        counts, times = await self._stats()
        top = sorted(self.categories.toplevel(), key=lambda c: (c.name.casefold(), c.name))
        if sort == "crates":
            top.sort(key=lambda c: -counts[c.slug])  # stable: alphabetical among equals
        return JSONResponse(
            {
                "categories": [self._json(c, counts, times) for c in top[offset : offset + limit]],
                "meta": {"total": len(top)},
            }
        )

    async def show_category(self, request: Request) -> Response:
        await self.registry.check_listing(request)
        slug = request.path_params["slug"]
        # Slugs are lower case; crates.io finds one asked in any case.
        found = self.categories.get(slug.lower() if slug.isascii() else slug)
        if found is None:
            raise not_found(f"category `{shown(slug[:100])}` does not exist")
        counts, times = await self._stats()
        body = self._json(found, counts, times)
        body["subcategories"] = [
            self._json(c, counts, times) for c in self.categories.subcategories(found.slug)
        ]
        body["parent_categories"] = [
            self._json(c, counts, times) for c in self.categories.parents(found.slug)
        ]
        return JSONResponse({"category": body})

    async def category_slugs(self, request: Request) -> Response:
        """Every slug a manifest may name, subcategories included, in slug order."""
        await self.registry.check_read(request)
        slugs = sorted(self.categories, key=lambda c: c.slug)
        return JSONResponse(
            {
                "category_slugs": [
                    {"id": c.slug, "slug": c.slug, "description": c.description} for c in slugs
                ]
            }
        )

    async def list_keywords(self, request: Request) -> Response:
        await self.registry.check_listing(request)
        by_crates = choice(request, "sort", "alpha", LIST_SORTS) == "crates"
        limit, offset = page_of(request)
        found, total = await self.registry.run_db(
            lambda: self.registry.db.keywords(by_crates, limit, offset)
        )
        return JSONResponse(
            {"keywords": [keyword_json(k) for k in found], "meta": {"total": total}}
        )

    async def show_keyword(self, request: Request) -> Response:
        await self.registry.check_listing(request)
        asked = request.path_params["keyword"]
        key = keyword_key(asked)
        found = None
        if key is not None:
            found = await self.registry.run_db(lambda: self.registry.db.keyword(key))
        if found is None:
            raise not_found(f"keyword `{shown(asked[:100])}` does not exist")
        return JSONResponse({"keyword": keyword_json(found)})

    async def crate_terms(self, crate: CrateRow) -> dict[str, Any]:
        """The crate answer's top-level ``keywords`` and ``categories`` (the configured
        ones the crate names), as crates.io adds them."""
        keywords = await self.registry.run_db(lambda: self.registry.db.crate_keywords(crate.id))
        counts, times = await self._stats()
        slugs = dict.fromkeys(crate.categories)  # stored before the list checked them: once each
        named = [c for c in (self.categories.get(s) for s in slugs) if c is not None]
        return {
            "keywords": [keyword_json(k) for k in keywords],
            "categories": [self._json(c, counts, times) for c in named],
        }
