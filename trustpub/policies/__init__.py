"""Trust policies: the model, strict loading from TOML files, and the lookup index."""

from trustpub.policies.live import LivePolicies
from trustpub.policies.loader import (
    DEFAULT_POLICY_DIR,
    load_policies,
    parse_policy_file,
)
from trustpub.policies.model import DEFAULT_TOKEN_TTL, JobWorkflowRule, Policy
from trustpub.policies.patterns import PatternError, RefPattern
from trustpub.policies.policyset import PolicySet

__all__ = [
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
]
