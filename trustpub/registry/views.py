"""JSON shapes of the web API (crates.io's field names, so existing tools read them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from trustpub.registry.categories import Category
from trustpub.registry.db import (
    AuditEvent,
    CrateRow,
    Delivery,
    DependencyRow,
    KeywordRow,
    User,
    VersionRow,
    Webhook,
)
from trustpub.registry.db.downloads import DayCount
from trustpub.registry.versions import parse_version
from trustpub.web import paths, rfc3339


def _key(version: VersionRow) -> Any:
    return parse_version(version.num).sort_key()


def newest_first(versions: Sequence[VersionRow]) -> list[VersionRow]:
    """Versions by their number (semver precedence), highest first."""
    return sorted(versions, key=_key, reverse=True)


def crate_summary(
    crate: CrateRow, versions: Sequence[VersionRow], recent_downloads: int | None = None
) -> dict[str, Any]:
    """``recent_downloads``: the last 90 days' (None where it was not read)."""
    live = [v for v in versions if not v.yanked]
    stable = [v for v in live if not parse_version(v.num).is_prerelease]
    max_version = max(live or versions, key=_key).num if versions else "0.0.0"
    return {
        "id": crate.name,
        "name": crate.name,
        "description": crate.description,
        "homepage": crate.homepage,
        "documentation": crate.documentation,
        "repository": crate.repository,
        "keywords": list(crate.keywords),
        "categories": list(crate.categories),
        "created_at": rfc3339(crate.created_at),
        "updated_at": rfc3339(crate.updated_at),
        "max_version": max_version,
        "max_stable_version": max(stable, key=_key).num if stable else None,
        "newest_version": versions[-1].num if versions else max_version,
        "downloads": crate.downloads,
        "recent_downloads": recent_downloads,
        "trustpub_only": crate.trustpub_only,
        "links": {
            "owners": f"{paths.CRATES}/{quote(crate.name)}/owners",
            "versions": f"{paths.CRATES}/{quote(crate.name)}/versions",
        },
    }


def version_detail(version: VersionRow) -> dict[str, Any]:
    features = dict(version.entry.get("features", {}))
    features.update(version.entry.get("features2", {}))
    return {
        "id": version.id,
        "crate": version.crate_name,
        "num": version.num,
        "dl_path": f"{paths.CRATES}/{quote(version.crate_name)}/{quote(version.num)}/download",
        "checksum": version.cksum,
        "crate_size": version.size,
        "yanked": version.yanked,
        "license": version.license,
        "rust_version": version.rust_version,
        "description": version.description,
        "features": features,
        "created_at": rfc3339(version.created_at),
        "updated_at": rfc3339(version.updated_at),
        "downloads": version.downloads,
        "published_by": {"login": version.published_by} if version.published_by else None,
        "trustpub_data": version.trustpub_data,
    }


def category_json(category: Category, crates_cnt: int, created_at: int) -> dict[str, Any]:
    """crates.io's category (its ``id`` is the slug)."""
    return {
        "id": category.slug,
        "category": category.name,
        "slug": category.slug,
        "description": category.description,
        "crates_cnt": crates_cnt,
        "created_at": rfc3339(created_at),
    }


def keyword_json(keyword: KeywordRow) -> dict[str, Any]:
    """crates.io's keyword (its ``id`` is the keyword itself)."""
    return {
        "id": keyword.keyword,
        "keyword": keyword.keyword,
        "crates_cnt": keyword.crates_cnt,
        "created_at": rfc3339(keyword.created_at),
    }


def dependency_json(
    dependency: DependencyRow, crate: str | None = None, downloads: int = 0
) -> dict[str, Any]:
    """A dependency as crates.io's API lists it: ``crate_id`` is the crate depended on
    (``crate`` when given: the name as stored, for reverse dependencies), never the
    name a renamed dependency has in the manifest. ``downloads``: as crates.io, the
    dependent crate's downloads for a reverse dependency, else 0."""
    return {
        "id": dependency.id,
        "version_id": dependency.version_id,
        "crate_id": crate if crate is not None else dependency.crate,
        "req": dependency.req,
        "optional": dependency.optional,
        "default_features": dependency.default_features,
        "features": list(dependency.features),
        "target": dependency.target,
        "kind": dependency.kind,
        "downloads": downloads,
    }


def download_json(count: DayCount) -> dict[str, Any]:
    """One version's downloads on one day (crates.io's ``version_downloads`` items)."""
    return {"version": count.version_id, "downloads": count.downloads, "date": count.date}


def extra_download_json(count: DayCount) -> dict[str, Any]:
    """The other versions' downloads on one day, added up (``meta.extra_downloads``)."""
    return {"date": count.date, "downloads": count.downloads}


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "login": user.login, "name": None, "kind": "user"}


def event_json(event: AuditEvent) -> dict[str, Any]:
    """An audit event as the audit API, the CLI and webhooks show it."""
    return {
        "id": event.id,
        "kind": event.kind,
        "crate": event.crate,
        "actor": event.actor_login,
        "client": event.client,
        "request_id": event.request_id,
        "created_at": rfc3339(event.created_at),
        "details": event.details,
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """A notification's state, for owners: to whom (a login or a webhook, never an
    address), how it went."""
    return {
        "channel": delivery.channel,
        "recipient": delivery.recipient,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "delivered_at": rfc3339(delivery.delivered_at) if delivery.delivered_at else None,
    }


def audit_json(event: AuditEvent, deliveries: Sequence[Delivery]) -> dict[str, Any]:
    return {**event_json(event), "deliveries": [delivery_json(d) for d in deliveries]}


def webhook_json(webhook: Webhook, last: Delivery | None) -> dict[str, Any]:
    """A subscription (never its secret) and its latest delivery."""
    return {
        "id": webhook.id,
        "crate": webhook.crate,
        "url": webhook.url,
        "created_by": webhook.created_by,
        "created_at": rfc3339(webhook.created_at),
        "last_delivery": delivery_json(last) if last is not None else None,
    }
