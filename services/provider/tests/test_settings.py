import pytest
from pydantic import ValidationError

from provider.settings import ProviderSettings


def test_allowlist_and_ports_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_ALLOWED_API_HOSTS", "API.MPESA.example, *.bank.example,")
    monkeypatch.setenv("PROVIDER_ALLOWED_API_PORTS", "443,8443")

    settings = ProviderSettings(environment="test")

    assert settings.allowed_api_hosts == ["api.mpesa.example", "*.bank.example"]
    assert settings.allowed_api_ports == [443, 8443]
    assert settings.port == 8102
    assert settings.database_url.endswith("/amana_provider")


@pytest.mark.parametrize("entry", ["*", "*.com", "https://api.example", "api.example:443", "a b"])
def test_an_allowlist_entry_that_is_not_a_host_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="allowed_api_hosts"):
        ProviderSettings(environment="test", allowed_api_hosts=[entry])


def test_the_default_allowlist_refuses_every_api_host() -> None:
    policy = ProviderSettings(environment="test").api_url_policy()

    assert policy.allowed_hosts == ()
    assert policy.production is False
