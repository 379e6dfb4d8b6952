"""The SSRF guard for configured outbound URLs."""

import pytest

from amana_common.outbound import OutboundUrlPolicy, UnsafeUrl, normalize_host_pattern

HOSTS = ("api.psp.example", "*.bank.example", "41.90.64.10", "10.1.2.3", "localhost", "::1")
PRODUCTION = OutboundUrlPolicy(HOSTS, frozenset({443, 8443}), production=True)
DEVELOPMENT = OutboundUrlPolicy(HOSTS, frozenset({443}), production=False)

ACCEPTED = [
    (PRODUCTION, "https://api.psp.example/v1", "https://api.psp.example/v1"),
    (PRODUCTION, "HTTPS://API.PSP.Example.:8443/v1", "https://api.psp.example:8443/v1"),
    (PRODUCTION, "https://pay.bank.example", "https://pay.bank.example"),
    (PRODUCTION, "https://a.b.bank.example/x", "https://a.b.bank.example/x"),
    (PRODUCTION, "https://41.90.64.10/api", "https://41.90.64.10/api"),
    (DEVELOPMENT, "http://localhost:8555/sandbox", "http://localhost:8555/sandbox"),
    (DEVELOPMENT, "http://[::1]:9000/", "http://[::1]:9000/"),
    (DEVELOPMENT, "https://10.1.2.3/", "https://10.1.2.3/"),
]


@pytest.mark.parametrize(("policy", "url", "normalised"), ACCEPTED)
def test_safe_urls_are_accepted_and_normalised(
    policy: OutboundUrlPolicy, url: str, normalised: str
) -> None:
    assert policy.check(url) == normalised


REFUSED = [
    (PRODUCTION, "http://api.psp.example/v1", "https"),
    (PRODUCTION, "ftp://api.psp.example/", "absolute https"),
    (PRODUCTION, "//api.psp.example/", "absolute https"),
    (PRODUCTION, "api.psp.example", "absolute https"),
    (PRODUCTION, "https://user:pw@api.psp.example/", "credentials"),
    (PRODUCTION, "https://api.psp.example@169.254.169.254/", "credentials"),
    (PRODUCTION, "https://api.psp.example/v1?key=1", "query"),
    (PRODUCTION, "https://api.psp.example/v1#x", "fragment"),
    (PRODUCTION, "https://api.psp.example\\@evil.example/", "backslash"),
    (PRODUCTION, "https://api.psp.example /", "whitespace"),
    (PRODUCTION, "https://evil.example/", "allowlist"),
    (PRODUCTION, "https://api.psp.example.evil.example/", "allowlist"),
    (PRODUCTION, "https://bank.example/", "allowlist"),
    (PRODUCTION, "https://xbank.example/", "allowlist"),
    (PRODUCTION, "https://api.psp.example:8080/", "port 8080"),
    (PRODUCTION, "https://api.psp.example:99999/", "valid URL"),
    (PRODUCTION, "https://169.254.169.254/latest/meta-data", "link-local"),
    (PRODUCTION, "https://[fe80::1]/", "link-local"),
    (PRODUCTION, "https://0.0.0.0/", "unspecified"),
    (PRODUCTION, "https://10.1.2.3/", "public address"),
    (PRODUCTION, "https://[::ffff:10.1.2.3]/", "public address"),
    (PRODUCTION, "https://localhost/", "loopback"),
    (PRODUCTION, "https://2130706433/", "not a valid host"),
    (PRODUCTION, "https://0x7f.1/", "not a valid host"),
    (PRODUCTION, "https://%61pi.psp.example/", "not a valid host"),
    (PRODUCTION, "https://bücher.bank.example/", "punycode"),
    (PRODUCTION, "https://" + "a" * 2050, "longer"),
    (DEVELOPMENT, "http://api.psp.example/", "https"),
    (DEVELOPMENT, "http://127.0.0.2/", "allowlist"),
    (DEVELOPMENT, "https://api.psp.example:8443/", "port 8443"),
]


@pytest.mark.parametrize(("policy", "url", "reason"), REFUSED)
def test_unsafe_urls_are_refused_with_the_reason(
    policy: OutboundUrlPolicy, url: str, reason: str
) -> None:
    with pytest.raises(UnsafeUrl, match=reason):
        policy.check(url)


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("API.PSP.example.", "api.psp.example"),
        ("*.Bank.example", "*.bank.example"),
        ("[::1]", "::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
    ],
)
def test_allowlist_entries_are_normalised(entry: str, normalised: str) -> None:
    assert normalize_host_pattern(entry) == normalised


@pytest.mark.parametrize(
    "entry", ["*", "*.com", "*.10.0.0.1", "https://a.example", "a.example:443", "-a.example", ""]
)
def test_allowlist_entries_that_are_not_hosts_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        normalize_host_pattern(entry)
