import pytest
from pydantic import BaseModel, ValidationError

from amana_common.validation import (
    ISO_4217,
    CountryCode,
    CurrencyCode,
    LocationCode,
    Omittable,
    UniqueList,
)


class Example(BaseModel):
    currencies: UniqueList[CurrencyCode] = []
    country: CountryCode = "KE"
    location: LocationCode = "KE"
    note: Omittable[str] = None


def test_iso_4217_holds_circulating_currencies_only() -> None:
    assert {"KES", "UGX", "XOF", "USD", "EUR", "ZWG", "SLE"} <= ISO_4217
    assert not {"XXX", "XTS", "XAU", "USN", "CLF", "ZWL", "HRK"} & ISO_4217
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"currencies": ["KES", "ABC"]}, "currencies.1"),
        ({"currencies": ["KES", "KES"]}, "currencies"),
        ({"country": "KEN"}, "country"),
        ({"location": "ke-047"}, "location"),
        ({"note": None}, "note"),
    ],
)
def test_bad_values_name_their_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Example.model_validate(values)
    assert [".".join(map(str, e["loc"])) for e in refused.value.errors()] == [field]


def test_omittable_may_be_left_out() -> None:
    assert Example.model_validate({}).note is None
