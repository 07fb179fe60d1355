"""Pin the public surface of policies and providers (what other modules import)."""

import trustpub.policies
import trustpub.providers


def test_policies_exports() -> None:
    assert set(trustpub.policies.__all__) == {
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
    }


def test_providers_exports() -> None:
    assert set(trustpub.providers.__all__) == {
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
    }
