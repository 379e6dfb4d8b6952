import pytest

from amana_common.errors import Problem
from amana_common.etag import etag, parse_if_match


def test_etag_quotes_the_version() -> None:
    assert etag(7) == '"7"'


@pytest.mark.parametrize(
    ("header", "tags"),
    [('"3"', {"3"}), (' "3" , "4"', {"3", "4"}), ('W/"3", "4"', {"4"}), ('W/"3"', set())],
)
def test_if_match_keeps_the_strong_tags(header: str, tags: set[str]) -> None:
    assert parse_if_match(header).tags == tags


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 428), ("", 428), ("*", 428), ("3", 422), ('"3"\x85', 422), ('\t"3"', 422)],
)
def test_missing_wildcard_or_malformed_if_match_is_refused(header: str | None, status: int) -> None:
    with pytest.raises(Problem) as refused:
        parse_if_match(header)
    assert refused.value.status == status


def test_a_stale_version_is_412_with_the_current_etag() -> None:
    parse_if_match('"2", "3"').require(3)
    with pytest.raises(Problem) as refused:
        parse_if_match('"2"').require(3)
    assert refused.value.status == 412
    assert refused.value.headers == {"ETag": '"3"'}
