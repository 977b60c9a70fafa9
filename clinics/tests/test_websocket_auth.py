"""WebSocket authentication, through Channels' communicator and a consumer that uses it."""

import time

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from clinics.auth.websocket import (
    APP_PROTOCOL,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHENTICATED,
    SocketRefused,
    authorize_socket,
)
from conftest import make_claims, sign

pytestmark = [pytest.mark.usefixtures("clerk_settings"), pytest.mark.django_db(transaction=True)]


class ProbeConsumer(AsyncJsonWebsocketConsumer):
    """Accepts with the application protocol after authorizing, then echoes its access.

    It joins no group, so it takes no channel layer (an alias that names none): a refused
    probe's consumer is still running when its test's loop ends, and one run hung there while
    the loop cancelled it (the layer's pending receive being all it awaits besides the test)."""

    channel_layer_alias = "no-channel-layer"

    async def connect(self):
        try:
            self.access = await authorize_socket(self.scope, self.scope["url_route"]["kwargs"]["org_id"])
        except SocketRefused as refused:
            await self.close(code=refused.close_code)
            return
        await self.accept(subprotocol=APP_PROTOCOL)
        await self.send_json({"type": "hello", "org_id": self.access.org_id, "role": self.access.role})


application = URLRouter([path("ws/clinics/<str:org_id>/probe", ProbeConsumer.as_asgi())])


async def connect(org_id, protocols, user=None):
    communicator = WebsocketCommunicator(application, f"/ws/clinics/{org_id}/probe", subprotocols=protocols)
    if user is not None:
        communicator.scope["user"] = user
    connected, detail = await communicator.connect()
    return communicator, connected, detail


def run(coro):
    import asyncio

    return asyncio.run(coro)


def test_token_subprotocol_is_accepted_without_echoing_the_token(world):
    token = sign(make_claims(world.org_a.pk, role="org:member"))

    async def scenario():
        communicator, connected, subprotocol = await connect(world.org_a.pk, [APP_PROTOCOL, f"bearer.{token}"])
        hello = await communicator.receive_json_from()
        await communicator.disconnect()
        return connected, subprotocol, hello

    connected, subprotocol, hello = run(scenario())
    assert connected and subprotocol == APP_PROTOCOL
    assert hello == {"type": "hello", "org_id": world.org_a.pk, "role": "staff"}


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda org: [APP_PROTOCOL], CLOSE_UNAUTHENTICATED),
        (lambda org: [APP_PROTOCOL, "bearer.not-a-token"], CLOSE_UNAUTHENTICATED),
        (lambda org: [APP_PROTOCOL, f"bearer.{sign(make_claims(org, iat=1000, nbf=1000, exp=2000))}"], CLOSE_TOKEN_EXPIRED),
        (lambda org: [APP_PROTOCOL, f"bearer.{sign(make_claims('org_2yBqMfT93kLpZcVwXs4Rt8uNa1Q'))}"], CLOSE_FORBIDDEN),
        (lambda org: [APP_PROTOCOL, f"bearer.{sign(make_claims(org, role='org:intern'))}"], CLOSE_FORBIDDEN),
    ],
    ids=["no-token", "garbage", "expired", "other-organization", "unknown-role"],
)
def test_refusals_close_with_documented_codes(world, build, code):
    async def scenario():
        communicator, connected, close_code = await connect(world.org_a.pk, build(world.org_a.pk))
        return connected, close_code

    connected, close_code = run(scenario())
    assert connected is False
    assert close_code == code


def test_malformed_organization_is_not_found(world):
    async def scenario():
        return await connect("not-an-org", [APP_PROTOCOL])

    _, connected, close_code = run(scenario())
    assert (connected, close_code) == (False, CLOSE_NOT_FOUND)


def test_session_user_must_be_a_member(world):
    async def scenario(user, org):
        communicator, connected, detail = await connect(org.pk, [APP_PROTOCOL], user=user)
        if connected:
            await communicator.disconnect()
        return connected, detail

    assert run(scenario(world.staff_a, world.org_a)) == (True, APP_PROTOCOL)
    assert run(scenario(world.staff_a, world.org_b)) == (False, CLOSE_FORBIDDEN)


def test_first_message_token_and_required_role(world):
    token = sign(make_claims(world.org_a.pk, role="org:viewer"))

    async def scenario():
        access = await authorize_socket({"subprotocols": []}, world.org_a.pk, token=token)
        with pytest.raises(SocketRefused) as refused:
            await authorize_socket({"subprotocols": []}, world.org_a.pk, token=token, required="staff")
        return access, refused.value.close_code

    access, code = run(scenario())
    assert access.role == "read_only" and access.token_expires_at > time.time()
    assert code == CLOSE_FORBIDDEN
