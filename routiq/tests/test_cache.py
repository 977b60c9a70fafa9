"""The Redis cache keeps one client (one connection pool) per process, whatever the context.
(No connection is made here: redis-py connects on first command, so this runs without Redis.)"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache

from routiq.cache import SharedPoolRedisCache


def _clients(backend, location, count=4):
    found = []

    def grab():  # a new cache object in a new thread: what Django makes for each ASGI request
        found.append(backend(location, {"KEY_PREFIX": "routiq"})._cache)

    threads = [threading.Thread(target=grab) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def test_every_request_context_shares_one_client():
    found = _clients(SharedPoolRedisCache, "redis://127.0.0.1:6379/0")
    assert len({id(client) for client in found}) == 1


def test_the_stock_backend_would_not_share():  # what the shared pool is for
    found = _clients(RedisCache, "redis://127.0.0.1:6379/0")
    assert len({id(client) for client in found}) == len(found)


def test_different_servers_get_different_clients():
    one = SharedPoolRedisCache("redis://127.0.0.1:6379/0", {})._cache
    other = SharedPoolRedisCache("redis://127.0.0.1:6379/1", {})._cache
    assert one is not other


def test_one_redis_client_serves_every_command():
    cache = SharedPoolRedisCache("redis://127.0.0.1:6379/3", {})
    first = cache._cache.get_client("a", write=True)
    assert cache._cache.get_client("b") is first
    assert first.connection_pool is cache._cache._get_connection_pool(True)
