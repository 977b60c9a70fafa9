"""Clerk session tokens, verified without a network call (platform-notes.md, Clerk section).

Keys come from `CLERK_JWT_KEY` (PEM), a cached JWKS (`CLERK_JWKS_URL`, refreshed when an
unknown `kid` appears), and in development only a local key that `mint_token` signs with.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from routiq.api.errors import TokenExpired, TokenInvalid

logger = logging.getLogger(__name__)

LEEWAY_SECONDS = 5
DEV_KID = "routiq-dev"
DEV_ISSUER = "https://routiq.dev.local"
JWKS_MIN_REFRESH_SECONDS = 60


@dataclass(frozen=True)
class SessionClaims:
    user_id: str
    session_id: str
    org_id: str | None
    org_role: str | None
    expires_at: int
    raw: dict[str, Any]


@dataclass(frozen=True)
class _Key:
    public_key: Any
    issuer: str


class KeySet:
    """Public keys by `kid`. Thread-safe; the JWKS is fetched at most once a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str | None, _Key] = {}
        self._jwks_fetched_at = 0.0
        self._configured_with: tuple[Any, ...] | None = None

    def get(self, kid: str | None) -> _Key | None:
        self._configure()
        key = self._keys.get(kid)
        if key is None and kid and settings.CLERK_JWKS_URL:
            self._refresh_jwks()
            key = self._keys.get(kid)
        if key is None and None in self._keys and kid != DEV_KID:
            key = self._keys[None]  # a PEM key configured without a kid
        return key

    def _configure(self) -> None:
        signature = (
            settings.CLERK_JWT_KEY,
            settings.CLERK_ISSUER,
            settings.ROUTIQ_DEV_AUTH,
            settings.STATE_DIR,
        )
        if signature == self._configured_with:
            return
        with self._lock:
            self._keys = {}
            self._jwks_fetched_at = 0.0
            if settings.CLERK_JWT_KEY:
                pem = settings.CLERK_JWT_KEY.replace("\\n", "\n").encode()
                self._keys[None] = _Key(serialization.load_pem_public_key(pem), settings.CLERK_ISSUER)
            if settings.ROUTIQ_DEV_AUTH:
                self._keys[DEV_KID] = _Key(dev_private_key().public_key(), DEV_ISSUER)
            self._configured_with = signature

    def _refresh_jwks(self) -> None:
        with self._lock:
            if time.monotonic() - self._jwks_fetched_at < JWKS_MIN_REFRESH_SECONDS:
                return
            self._jwks_fetched_at = time.monotonic()
            try:
                response = requests.get(settings.CLERK_JWKS_URL, timeout=5)
                response.raise_for_status()
                keys = response.json().get("keys", [])
            except (requests.RequestException, ValueError) as exc:
                logger.warning("could not fetch the Clerk JWKS: %s", type(exc).__name__)
                return
            for entry in keys:
                if entry.get("kty") == "RSA" and entry.get("kid"):
                    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(entry)
                    self._keys[entry["kid"]] = _Key(public_key, settings.CLERK_ISSUER)


KEYS = KeySet()


# A browser tab sends the same token with every request for its minute of life: a token this
# process verified is remembered (by digest, with the key and the authorized parties that
# passed it) for VERIFIED_SECONDS, its expiry still checked at each use.
VERIFIED_SECONDS = 30.0
VERIFIED_LIMIT = 10_000
_VERIFIED: dict[tuple[bytes, tuple[str, ...]], tuple[SessionClaims, float, _Key]] = {}
_VERIFIED_LOCK = threading.Lock()


def verified_tokens_forget() -> None:
    with _VERIFIED_LOCK:
        _VERIFIED.clear()


def verify_session_token(token: str) -> SessionClaims:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenInvalid("The token is not a JWT.") from None
    if header.get("alg") != "RS256":
        raise TokenInvalid("Only RS256 tokens are accepted.")
    key = KEYS.get(header.get("kid"))
    if key is None:
        raise TokenInvalid("The token was signed with an unknown key.")
    memo = (hashlib.sha256(token.encode()).digest(), tuple(settings.CLERK_AUTHORIZED_PARTIES))
    now = time.monotonic()
    with _VERIFIED_LOCK:
        known = _VERIFIED.get(memo)
    if known is not None and now < known[1] and known[2] is key:
        if known[0].expires_at + LEEWAY_SECONDS < time.time():
            raise TokenExpired()
        return known[0]
    claims = _verified_claims(token, key)
    with _VERIFIED_LOCK:
        if len(_VERIFIED) >= VERIFIED_LIMIT:
            _VERIFIED.clear()
        _VERIFIED[memo] = (claims, now + VERIFIED_SECONDS, key)
    return claims


def _verified_claims(token: str, key: _Key) -> SessionClaims:
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=["RS256"],
            issuer=key.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "iss"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except jwt.ImmatureSignatureError:
        raise TokenInvalid("The token is not valid yet.") from None
    except jwt.InvalidIssuerError:
        raise TokenInvalid("The token was issued by another instance.") from None
    except jwt.PyJWTError:
        raise TokenInvalid() from None
    return _session_claims(claims)


def _session_claims(claims: dict[str, Any]) -> SessionClaims:
    allowed = settings.CLERK_AUTHORIZED_PARTIES
    azp = claims.get("azp")
    if azp is not None and azp not in allowed:
        raise TokenInvalid("The token was issued for another origin.")
    if azp is None and allowed:
        raise TokenInvalid("The token names no authorized party.")
    org = claims.get("o") if isinstance(claims.get("o"), dict) else {}
    org_id = org.get("id") or claims.get("org_id")
    role = org.get("rol") or claims.get("org_role")
    return SessionClaims(
        user_id=str(claims["sub"]),
        session_id=str(claims.get("sid", "")),
        org_id=str(org_id) if org_id else None,
        org_role=str(role) if role else None,
        expires_at=int(claims["exp"]),
        raw=claims,
    )


def dev_private_key() -> rsa.RSAPrivateKey:
    """The development signing key, made once per install in the state folder."""
    if not settings.ROUTIQ_DEV_AUTH:
        raise RuntimeError("development tokens are disabled (ROUTIQ_DEV_AUTH is off)")
    path = Path(settings.STATE_DIR) / "dev_jwt_key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_bytes(pem)
        path.chmod(0o600)
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def mint_dev_token(
    *, user_id: str, org_id: str, role: str, lifetime_seconds: int = 3600, azp: str | None = None
) -> str:
    """A Clerk-shaped v2 session token signed with the development key."""
    now = int(time.time())
    clerk_role = {"admin": "admin", "staff": "member", "read_only": "viewer"}.get(role, role)
    claims = {
        "sub": user_id,
        "sid": f"sess_dev{now}",
        "iss": DEV_ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "azp": azp or (settings.CLERK_AUTHORIZED_PARTIES[0] if settings.CLERK_AUTHORIZED_PARTIES else None),
        "v": 2,
        "o": {"id": org_id, "rol": clerk_role, "slg": org_id.lower()},
    }
    if claims["azp"] is None:
        del claims["azp"]
    return jwt.encode(claims, dev_private_key(), algorithm="RS256", headers={"kid": DEV_KID})
