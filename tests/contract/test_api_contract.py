"""Schemathesis over every service's OpenAPI and the gateway's merged one: every check,
positive and negative data, and stateful sequences along the links between operations."""

from amana_common.testing.contract import Served, run_contract


def test_the_api_keeps_its_contract(served: Served) -> None:
    report = run_contract(served)
    print(f"\n{served.name}: {report.seconds}")
    for operation, counts in sorted(report.statuses.items()):
        print(f"  {operation}: {dict(sorted(counts.items()))}")

    assert report.scenarios > 0
    assert report.problems() == [], "\n".join(report.problems())
