"""Channel secrets: sealing at rest, and Standard Webhooks signatures.

Secrets (webhook signing secrets, provider API credentials) are stored sealed with AES-256-GCM
under `DISBURSEMENT_SECRETS_KEY`; the associated data binds each ciphertext to its provider and
purpose, so a sealed value copied to another row does not open. Signing and verification are
the `standardwebhooks` library's: a `whsec_` secret, headers `webhook-id`,
`webhook-timestamp` (within 5 minutes) and `webhook-signature`.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Literal
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SEAL_VERSION = b"\x01"
NONCE_BYTES = 12
WEBHOOK_SECRET_BYTES = 32
Purpose = Literal["webhook-secret", "api-credential"]


class SealBroken(Exception):
    """A sealed value does not open with this key (wrong key, or tampered with)."""


def _associated_data(provider_id: UUID, purpose: Purpose) -> bytes:
    return f"amana-disbursement:{provider_id}:{purpose}".encode()


def seal(key: bytes, provider_id: UUID, purpose: Purpose, value: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, value.encode(), _associated_data(provider_id, purpose))
    return SEAL_VERSION + nonce + ciphertext


def unseal(key: bytes, provider_id: UUID, purpose: Purpose, sealed: bytes) -> str:
    if sealed[:1] != SEAL_VERSION:
        raise SealBroken("unknown seal version")
    nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(provider_id, purpose))
    except InvalidTag as error:
        raise SealBroken("the sealed value does not open with this key") from error
    return plain.decode()


@lru_cache(maxsize=1024)
def unseal_cached(key: bytes, provider_id: UUID, purpose: Purpose, sealed: bytes) -> str:
    """`unseal`, remembered: every webhook opens its provider's secrets, and a sealed value
    opens to the same text for as long as it exists (a rotation seals a new one). Which
    secrets verify is still read from the database each time; a value that does not open is
    not remembered (the exception propagates)."""
    return unseal(key, provider_id, purpose, sealed)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()


class SignatureRefused(Exception):
    """Why a webhook is not authentic; `stale` when only its timestamp is out of the window."""

    def __init__(self, detail: str, stale: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.stale = stale


SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def verify_signature(
    webhook_secrets: Iterable[str], body: bytes, headers: Mapping[str, str]
) -> None:
    """Passes when one of the provider's current secrets signed `body` with these headers
    within the last 5 minutes (two secrets verify during a rotation's overlap)."""
    wanted = {name: headers.get(name, "") for name in SIGNATURE_HEADERS}
    if not all(wanted.values()):
        raise SignatureRefused("webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        text = body.decode()
    except UnicodeDecodeError as error:
        raise SignatureRefused("the body is not UTF-8") from error
    last = "the provider has no webhook secret"
    for secret in webhook_secrets:
        try:
            Webhook(secret).verify(text, wanted, json_parse=False)
            return
        except WebhookVerificationError as error:
            last = str(error)
            if "timestamp" in last.lower() or "Invalid Signature Headers" in last:
                raise SignatureRefused(f"refused: {last}", stale=True) from error
        except (ValueError, binascii.Error) as error:
            raise SignatureRefused("the webhook-signature header is malformed") from error
    raise SignatureRefused(f"refused: {last}")


def sign(secret: str, webhook_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The headers a provider sends with `body` (the PSP sandbox and tests sign this way)."""
    signature = Webhook(secret).sign(webhook_id, timestamp, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }
