import pytest

from amana_common.locations import ancestors_or_self, covered_by_any, covers, descendant_prefixes


def test_ancestors_are_the_code_cut_at_each_separator() -> None:
    assert ancestors_or_self("KE-047-0101") == ["KE", "KE-047", "KE-047-0101"]
    assert ancestors_or_self("KE.047.01") == ["KE", "KE.047", "KE.047.01"]
    assert ancestors_or_self("KE_047") == ["KE_047"]
    assert ancestors_or_self("KE") == ["KE"]


@pytest.mark.parametrize(
    ("area", "code", "covered"),
    [
        ("KE-047", "KE-047", True),
        ("KE-047", "KE-047-0101", True),
        ("KE", "KE-047-0101", True),
        ("KE-047", "KE-0470", False),
        ("KE-047", "KE-04", False),
        ("KE-047-0101", "KE-047", False),
        ("KE-047", "UG-047", False),
    ],
)
def test_an_area_covers_itself_and_what_lies_below(area: str, code: str, covered: bool) -> None:
    assert covers(area, code) is covered


def test_covered_by_any_and_descendant_prefixes() -> None:
    assert covered_by_any("KE-047-0101", ["UG", "KE-047"])
    assert not covered_by_any("KE-047-0101", ["UG", "KE-04"])
    assert descendant_prefixes("KE-047") == ("KE-047-", "KE-047.")
