"""The configured channel layer carries a message from one process to another.

This is what lets the worker's events reach the web process: PostgreSQL LISTEN/NOTIFY in the
default mode, Redis when REDIS_URL is set. The same test runs in both CI passes.
"""

import asyncio
import os
import sys
from pathlib import Path

import pytest
from channels.layers import get_channel_layer

from conftest import database_url

ROOT = Path(__file__).resolve().parents[2]

PUBLISH = """
import django, sys
django.setup()
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
async_to_sync(get_channel_layer().group_send)(sys.argv[1], {"type": "metrics.updated", "seq": 42, "note": "zoë"})
print("sent")
"""


@pytest.mark.django_db(transaction=True)
def test_a_group_message_crosses_from_another_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "routiq.settings", "DATABASE_URL": database_url()}
    group = f"org.test{os.getpid()}.metrics"

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISH, group, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(publisher.communicate(), timeout=60)
        assert publisher.returncode == 0, err.decode()[-2000:]
        message = await asyncio.wait_for(layer.receive(channel), timeout=10)
        await layer.group_discard(group, channel)
        return message

    message = asyncio.run(scenario())
    assert message["type"] == "metrics.updated"
    assert message["seq"] == 42 and message["note"] == "zoë"


def test_the_layer_matches_the_configuration(settings):
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if os.environ.get("REDIS_URL"):
        assert backend == "channels_redis.core.RedisChannelLayer"
    else:
        assert backend == "realtime.layers.PostgresChannelLayer"
