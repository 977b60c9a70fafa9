"""Fixtures of the live-update tests: the channel layer's copies recorded or dropped on purpose,
and WebSocket clients against the production stack (origin check, session, routes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from conftest import ORIGIN
from realtime import events
from realtime.protocol import APP_PROTOCOL
from realtime.routing import websocket_application

# The sync's fixtures (a simulated Cliniko account, a sync run in this process), for the hooks' tests.
from sync.tests.conftest import cliniko_simulator_factory, connection, run_sync, sim, simulator_clinic  # noqa: F401


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """What publish hands the channel layer, recorded instead of sent."""
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(events, "_group_send", lambda org_id, message: calls.append((org_id, message)))
    return calls


@pytest.fixture
def layer_drops(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """While `.on` is set, publish's copies are dropped (as a full channel drops them)."""
    real = events._group_send
    state = SimpleNamespace(on=False, dropped=[])

    def send(org_id: str, message: dict[str, Any]) -> None:
        if state.on:
            state.dropped.append(message)
            return
        real(org_id, message)

    monkeypatch.setattr(events, "_group_send", send)
    return state


@pytest.fixture
def live(clerk_settings: Any, settings: Any) -> Any:
    """Clerk keys of the test instance, and timings long enough not to interfere."""
    settings.REALTIME_HEARTBEAT_SECONDS = 30.0
    settings.REALTIME_IDLE_TIMEOUT_SECONDS = 60.0
    settings.REALTIME_AUTH_TIMEOUT_SECONDS = 5.0
    settings.REALTIME_MAX_CONNECTION_AGE_SECONDS = 600.0
    settings.REALTIME_SSE_POLL_SECONDS = 30.0
    return settings


@pytest.fixture(autouse=True)
def _empty_channel_layer(django_db_blocker: Any) -> Iterator[None]:
    """Group memberships left by an earlier test's sockets must not fill this one's channels."""
    with django_db_blocker.unblock():
        asyncio.run(get_channel_layer().flush())
    yield


async def open_socket(
    org_id: str,
    *,
    token: str | None = None,
    protocols: tuple[str, ...] = (APP_PROTOCOL,),
    origin: str | None = ORIGIN,
    cookie: str | None = None,
) -> tuple[WebsocketCommunicator, bool, Any]:
    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    subprotocols = [*protocols, *([f"bearer.{token}"] if token else [])]
    communicator = WebsocketCommunicator(
        websocket_application(), f"/ws/clinics/{org_id}/metrics", headers=headers, subprotocols=subprotocols
    )
    connected, detail = await communicator.connect(timeout=10)
    return communicator, connected, detail


async def next_message(communicator: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    """The next JSON message (a close is returned as {"type": "websocket.close", ...})."""
    import json

    output = await communicator.receive_output(timeout)
    if output["type"] == "websocket.close":
        return output
    return json.loads(output["text"])


async def close_code(communicator: WebsocketCommunicator, timeout: float = 10) -> int:
    """Reads until the server closes; the close code (messages before it are skipped)."""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output.get("code", 1000)
