from pathlib import Path

import pytest

from amana_contracts.generate import CONTRACTS_DIR, rendered_files


@pytest.mark.parametrize("path", sorted(rendered_files()), ids=lambda p: p.name)
def test_committed_contract_matches_generated(path: Path) -> None:
    generated = rendered_files()[path]
    assert path.exists(), f"{path} is missing: run `make contracts`"
    assert path.read_text() == generated, f"{path} is stale: run `make contracts`"


def test_no_stale_schema_files() -> None:
    expected = {p.name for p in rendered_files() if p.parent.name == "schemas"}
    committed = {p.name for p in (CONTRACTS_DIR / "schemas").glob("*.json")}
    assert committed == expected, "schemas/ holds files no model generates: run `make contracts`"
