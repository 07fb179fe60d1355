from tests.policies.factories import GHES, GITHUB, github_policy
from trustpub.policies import PolicySet


def test_lookup_is_case_insensitive_on_repository() -> None:
    policy = github_policy(repository="Octo-Org/Octo-Lib")
    policies = PolicySet([policy])
    assert policies.candidates(GITHUB.url, "octo-org/octo-lib") == (policy,)
    assert policies.candidates(GITHUB.url, "OCTO-ORG/OCTO-LIB") == (policy,)


def test_lookup_is_bound_to_the_exact_issuer() -> None:
    policies = PolicySet([github_policy()])
    assert policies.candidates(GHES.url, "octo-org/octo-lib") == ()
    assert policies.candidates(GITHUB.url + "/", "octo-org/octo-lib") == ()


def test_several_policies_for_one_repository_keep_file_order() -> None:
    a, b = github_policy("a"), github_policy("b", crates=("other",))
    c = github_policy("c", repository="octo-org/elsewhere")
    policies = PolicySet([a, c, b])
    assert policies.candidates(GITHUB.url, "octo-org/octo-lib") == (a, b)
    assert len(policies) == 3
    assert list(policies) == [a, c, b]


def test_lookup_with_many_policies_finds_exactly_the_right_ones() -> None:
    many = [
        github_policy(f"p{i}", repository=f"org{i % 1000}/repo{i}", crates=(f"crate{i}",))
        for i in range(100_000)
    ]
    policies = PolicySet(many)
    assert len(policies) == 100_000
    found = policies.candidates(GITHUB.url, "ORG123/REPO99123")
    assert [p.name for p in found] == ["p99123"]
    assert policies.candidates(GITHUB.url, "org123/repo-missing") == ()
    # That a lookup costs the same with 10 or 100,000 policies is measured, not asserted
    # on a clock: bench/policy_lookup.py.


def test_empty_set_has_no_candidates() -> None:
    assert PolicySet([]).candidates(GITHUB.url, "octo-org/octo-lib") == ()
    assert len(PolicySet([])) == 0
