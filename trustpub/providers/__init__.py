"""Providers: how each CI system's claims are read and matched to a policy.

``match`` is what the exchange calls: verified claims in, a ``Grant`` out, or a
``PolicyMismatch`` naming the field that failed.
"""

from trustpub.providers.base import (
    ClaimSource,
    FieldCheck,
    TokenFacts,
    UnverifiedClaims,
    WorkflowRef,
)
from trustpub.providers.github import REFUSED_EVENTS, parse_workflow_ref
from trustpub.providers.gitlab import (
    InMemoryNamespacePins,
    namespace_pin_key,
    parse_ci_config_path,
)
from trustpub.providers.matching import (
    PROVIDERS,
    Evaluation,
    PolicyReport,
    build_grant,
    evaluate,
    match,
)

__all__ = [
    "PROVIDERS",
    "REFUSED_EVENTS",
    "ClaimSource",
    "Evaluation",
    "FieldCheck",
    "InMemoryNamespacePins",
    "PolicyReport",
    "TokenFacts",
    "UnverifiedClaims",
    "WorkflowRef",
    "build_grant",
    "evaluate",
    "match",
    "namespace_pin_key",
    "parse_ci_config_path",
    "parse_workflow_ref",
]
