"""The production server as the benchmarks (and the cross-process tests) start it: uvicorn (or
daphne, to compare) on a free port, ROUTIQ_PRODUCTION on, DEBUG off, access log off, Clerk
tokens verified against a PEM key made here (RS256, as Clerk signs).

Standard library, cryptography and PyJWT only, and no other bench module: the benchmarks import
it as `_server` (run as scripts from bench/), the tests as `bench._server`.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://bench.clerk.accounts.dev"
ORIGIN = "https://app.routiq.bench"
SERVERS = ("uvicorn", "daphne")


def make_keys() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh Clerk-like instance key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def make_token(
    private_pem: str,
    org: str,
    *,
    user: str = "user_bench_admin",
    role: str = "admin",
    lifetime_seconds: int = 6 * 3600,
    issuer: str = ISSUER,
    origin: str = ORIGIN,
) -> str:
    """A Clerk v2 session token. Clerk's live 60 s; the verifier does not bound `exp`, so a
    benchmark mints long-lived ones instead of refreshing in-band."""
    import jwt

    now = int(time.time())
    claims = {
        "sub": user,
        "sid": f"sess_{user}",
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "azp": origin,
        "v": 2,
        "o": {"id": org, "rol": role, "slg": "bench"},
    }
    return jwt.encode(claims, private_pem, algorithm="RS256")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(
    database_url: str,
    public_pem: str,
    *,
    cache_seconds: int = 15 * 60,
    workers: int = 2,
    issuer: str = ISSUER,
    origin: str = ORIGIN,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The production settings, pointed at `database_url` (and at REDIS_URL when this process
    has one: the cache and channel layer follow it, as in production)."""
    from cryptography.fernet import Fernet

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ROUTIQ_PRODUCTION": "true",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ROUTIQ_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "CLERK_JWT_KEY": public_pem,
        "CLERK_ISSUER": issuer,
        "CLERK_AUTHORIZED_PARTIES": origin,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "THROTTLE_CALLER": "1000000/min",
        "THROTTLE_ORGANIZATION": "1000000/min",
        "LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": str(workers),
        "ANSWER_CACHE_SECONDS": str(cache_seconds),
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


class Server:
    """uvicorn as the Dockerfile starts it (WEB_CONCURRENCY workers), or daphne (one process)."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        kind: str = "uvicorn",
        port: int | None = None,
        app: str = "routiq.asgi:application",
    ) -> None:
        if kind not in SERVERS:
            raise ValueError(f"kind must be one of {SERVERS}")
        self.kind = kind
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        if kind == "uvicorn":
            command = [
                sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
                "--port", str(self.port), "--no-server-header", "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
        else:
            command = [
                sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "-v", "0", app,
            ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)

    def wait(self, token: str | None = None, path: str = "/health/live", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode})")
            try:
                self.get(token, path)
                return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError("the server did not answer in time")

    def get(self, token: str | None, path: str) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.base + path, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def rss_kib(self) -> int:
        """Resident memory of the serving process (uvicorn with one worker serves in-process)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
