"""Each package's face: the names it exports, pinned (as httpx pins its own).

Other packages import a package by these names only; its modules are internals. A name
added to or dropped from a face is a change of the public surface: make it here, on
purpose. (``trustpub.cli`` is a command, not a library: its face is the command line.)
"""

from __future__ import annotations

import importlib
import inspect

import pytest

FACES: dict[str, list[str]] = {
    "trustpub.api": [
        "ROUTES",
        "Services",
        "app_from_environment",
        "create_app",
        "services",
    ],
    "trustpub.devissuer": [
        "DEFAULT_LIFETIME",
        "DevIssuer",
        "build_claims",
        "create_app",
        "generate_key",
        "key_thumbprint",
        "load_key",
        "save_key",
        "serve_in_thread",
    ],
    "trustpub.oidc": [
        "DEFAULT_ISSUERS",
        "Issuer",
        "KeySetStatus",
        "KeySets",
        "VerifiedClaims",
        "Verifier",
    ],
    "trustpub.policies": [
        "DEFAULT_POLICY_DIR",
        "DEFAULT_TOKEN_TTL",
        "JobWorkflowRule",
        "LivePolicies",
        "PatternError",
        "Policy",
        "PolicySet",
        "RefPattern",
        "load_policies",
        "parse_policy_file",
    ],
    "trustpub.providers": [
        "ClaimSource",
        "Evaluation",
        "FieldCheck",
        "InMemoryNamespacePins",
        "PROVIDERS",
        "PolicyReport",
        "REFUSED_EVENTS",
        "TokenFacts",
        "UnverifiedClaims",
        "WorkflowRef",
        "build_grant",
        "evaluate",
        "match",
        "namespace_pin_key",
        "parse_ci_config_path",
        "parse_workflow_ref",
    ],
    "trustpub.notify": [
        "DestinationRefused",
        "NotificationSettings",
        "OutboxWorker",
        "WebhookRules",
        "check_email",
        "parse_notifications",
        "signature",
        "verify",
    ],
    "trustpub.registry": [
        "Limits",
        "LocalAuthority",
        "Registry",
        "RemoteAuthority",
        "TokenAuthority",
        "TrustedToken",
        "create_registry_app",
        "generate_user_token",
    ],
    "trustpub.store": [
        "NamespacePins",
        "PostgreSQLStore",
        "RedisStore",
        "SQLiteStore",
        "Store",
        "StoreNotDurable",
        "check_store",
        "open_store",
    ],
    "trustpub.tokens": [
        "IssuedToken",
        "MalformedRecord",
        "PREFIX",
        "REGISTRY_TOKENS",
        "TOKEN_LENGTH",
        "TRUSTPUB_TOKENS",
        "TokenFormat",
        "TokenRecord",
        "TokenService",
        "generate_token",
        "is_well_formed",
        "jti_key",
        "parse_new_crate_owners",
        "token_hash",
    ],
    "trustpub.web": [
        "Answer",
        "BoundedApplication",
        "CLIENT_CLOSED_REQUEST",
        "ClientAddress",
        "Endpoint",
        "ErrorBoundary",
        "FastLane",
        "JSONResponse",
        "JSON_LIMIT",
        "Lane",
        "MAX_JSON_DEPTH",
        "NO_STORE",
        "RenderedJSONResponse",
        "bearer_credential",
        "error_response",
        "exception_handlers",
        "parse_json",
        "parse_networks",
        "paths",
        "query_int",
        "read_body",
        "read_json_object",
        "render_json",
        "rfc3339",
        "string_field",
    ],
    "trustpub.errors": [
        "ConfigurationError",
        "ExchangeRefused",
        "InvalidJWT",
        "JWTReplayed",
        "KeySetUnavailable",
        "PolicyLoadError",
        "PolicyMismatch",
        "PolicyProblem",
        "StoreUnavailable",
        "TrustpubError",
        "UnsupportedIssuer",
    ],
    "trustpub.logs": [
        "JSONFormatter",
        "access_log",
        "audit",
        "audit_log",
        "configure",
        "log_fields",
    ],
    "trustpub.server": ["serve"],
    "trustpub.metrics": [
        "CONTENT_TYPE",
        "Counter",
        "DEFAULT_BUCKETS",
        "Gauge",
        "Histogram",
        "MULTIPROC_ENV",
        "MetricsRegistry",
        "RegistryMetrics",
        "setup_multiprocess",
        "worker_exited",
    ],
}


@pytest.mark.parametrize("name", sorted(FACES))
def test_the_face_is_exactly_the_pinned_names(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == FACES[name]
    for member in module.__all__:
        assert hasattr(module, member), member


@pytest.mark.parametrize("name", sorted(FACES))
def test_every_public_class_and_function_of_the_package_is_on_its_face(name: str) -> None:
    # What a package defines (or hands on from its own modules) without a leading
    # underscore is public: it must be on the face, or be renamed private.
    module = importlib.import_module(name)
    defined = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__.startswith(name)
    }
    assert defined <= set(module.__all__)


def test_every_package_is_pinned_but_the_command() -> None:
    import pkgutil

    import trustpub

    packages = {
        f"trustpub.{info.name}"
        for info in pkgutil.iter_modules(trustpub.__path__)
        if info.ispkg and info.name != "cli"
    }
    assert packages <= set(FACES)
