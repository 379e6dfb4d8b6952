import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from amana_common.errors import PROBLEM_JSON, Problem
from amana_common.etag import ENTITY_TAGS_PATTERN, HEADER, IfMatchDep, etag, parse_if_match
from amana_common.testing.clients import app_without_database, service_client

router = APIRouter()


@router.patch("/things/{thing_id}")
async def change_thing(thing_id: int, if_match: IfMatchDep) -> dict[str, list[str]]:
    return {"tags": sorted(if_match.tags)}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(app_without_database(router)) as client:
        yield client


def test_etag_quotes_the_version() -> None:
    assert etag(7) == '"7"'


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ('"3"', {"3"}),
        (' "3" , "4"', {"3", "4"}),
        ('W/"3", "4"', {"4"}),
        ('W/"3"', set()),
        ('"a,b", "c"', {"a,b", "c"}),
    ],
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


def test_the_documented_pattern_is_the_one_enforced() -> None:
    """What the OpenAPI pattern calls valid parses; what it calls invalid is refused."""
    for header in ['"3"', ' "3" , "4"', 'W/"3"', '"a,b", "c"', '""']:
        assert re.fullmatch(ENTITY_TAGS_PATTERN, header)
        parse_if_match(header)
    for header in ["*", "3", '"3",', '"3" "4"', '"a"b"']:
        assert not re.fullmatch(ENTITY_TAGS_PATTERN, header)
        with pytest.raises(Problem):
            parse_if_match(header)


async def test_a_change_without_if_match_is_428_and_the_header_is_documented_required(
    client: httpx.AsyncClient,
) -> None:
    response = await client.patch("/things/1")

    assert response.status_code == 428, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"].endswith("/precondition-required")
    document = (await client.get("/openapi.json")).json()
    parameters = document["paths"]["/things/{thing_id}"]["patch"]["parameters"]
    header = next(p for p in parameters if p["name"] == HEADER)
    assert header["in"] == "header"
    assert header["required"] is True
    assert header["schema"]["pattern"] == ENTITY_TAGS_PATTERN


async def test_the_tags_reach_the_route(client: httpx.AsyncClient) -> None:
    response = await client.patch("/things/1", headers={HEADER: '"2", W/"3"'})

    assert response.json() == {"tags": ["2"]}


async def test_a_change_without_if_match_and_with_other_errors_is_422_naming_them(
    client: httpx.AsyncClient,
) -> None:
    response = await client.patch("/things/not-a-number")

    assert response.status_code == 422, response.text
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"thing_id", HEADER}
