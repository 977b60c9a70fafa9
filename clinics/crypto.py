"""Encryption of PMS credentials at rest, with keys from `ROUTIQ_ENCRYPTION_KEY`."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialsUnreadable(Exception):
    """The stored credentials cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt_credentials(credentials: dict[str, Any]) -> bytes:
    return _current().encrypt(json.dumps(credentials, sort_keys=True).encode())


def decrypt_credentials(ciphertext: bytes | memoryview) -> dict[str, Any]:
    try:
        return json.loads(_current().decrypt(bytes(ciphertext)))
    except InvalidToken:
        raise CredentialsUnreadable("credentials were encrypted with a key no longer configured") from None
