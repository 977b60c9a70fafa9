"""The token bucket and circuit breaker every process using one PMS credential shares.

State lives in PostgreSQL rows written on a private connection, so these tests use fresh keys
(no cleanup needed) and fake clocks where time matters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import transaction

from conftest import database_url
from sync.models import BreakerState, PacingState
from sync.pms.errors import PmsCircuitOpen, PmsRateLimited
from sync.pms.pacing import CircuitBreaker, CircuitState, TokenBucket, credential_key
from sync.tests.fakes import FakeClock

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


@pytest.fixture
def key() -> str:
    return credential_key(uuid.uuid4().hex, namespace="test")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_credential_key_is_stable_and_reveals_nothing():
    secret = "MS0xMjM0NTY3ODkwYWJjZGVm-au2"
    key = credential_key(secret, namespace="cliniko")
    assert key == credential_key(secret, namespace="cliniko")
    assert key != credential_key(secret, namespace="nookal")
    assert len(key) == 64 and secret not in key and "au2" not in key


def test_state_tables_belong_to_no_tenant():
    # Keyed by credential hash: no organization column, so no row-level security applies,
    # and a budget spent by one organization's sync is the same budget for all of them.
    for model in (PacingState, BreakerState):
        assert {f.name for f in model._meta.get_fields()}.isdisjoint({"organization", "organization_id"})


# --- token bucket -----------------------------------------------------------------------------
def test_a_burst_is_limited_to_the_burst_size_then_the_rate(key, clock):
    bucket = TokenBucket(key, rate_per_minute=60, burst=3, clock=clock, sleep=clock.sleep)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(1.0)
    assert PacingState.objects.get(key=key).tokens == pytest.approx(0.0)  # the test database's row

    clock.now += 0.5
    assert bucket.try_acquire() == pytest.approx(0.5)

    start = clock.now
    for _ in range(10):
        bucket.acquire()
    # 0.5 s of credit was already accrued; ten more tokens at 1/s need 9.5 s more.
    assert clock.now - start == pytest.approx(9.5)
    assert all(0 < s <= 1.0 + 1e-9 for s in clock.sleeps)


def test_default_rate_stays_under_clinikos_200_per_minute(key, clock):
    bucket = TokenBucket(key, clock=clock, sleep=clock.sleep)
    start = clock.now
    granted = 0
    while clock.now - start < 60:
        bucket.acquire()
        granted += 1
    assert 195 <= granted <= 198  # burst 3 + 195 per minute, under the 200 allowed


def test_a_second_bucket_object_with_the_same_key_shares_the_tokens(key, clock):
    first = TokenBucket(key, rate_per_minute=60, burst=2, clock=clock)
    second = TokenBucket(key, rate_per_minute=60, burst=2, clock=clock)
    assert first.try_acquire() == 0.0
    assert second.try_acquire() == 0.0
    assert first.try_acquire() > 0
    assert second.try_acquire() > 0
    assert TokenBucket(credential_key("other", namespace="test"), clock=clock).try_acquire() == 0.0


def test_threads_never_take_more_tokens_than_there_are(key):
    # Real clock, a rate so slow that nothing refills during the test: exactly `burst` succeed.
    granted: list[float] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        bucket = TokenBucket(key, rate_per_minute=0.01, burst=5)
        barrier.wait()
        for _ in range(5):
            if bucket.try_acquire() == 0.0:
                granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(granted) == 5


@pytest.mark.slow
def test_a_bucket_is_shared_with_another_process(key):
    bucket = TokenBucket(key, rate_per_minute=0.01, burst=3)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == 0.0
    script = (
        "import django, sys; django.setup()\n"
        "from sync.pms.pacing import TokenBucket\n"
        f"bucket = TokenBucket({key!r}, rate_per_minute=0.01, burst=3)\n"
        "print(bucket.try_acquire() == 0.0, bucket.try_acquire() == 0.0)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "routiq.settings", "DATABASE_URL": database_url()}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "False"]
    assert bucket.try_acquire() > 0


def test_hold_until_makes_every_holder_of_the_key_wait(key, clock):
    bucket = TokenBucket(key, rate_per_minute=60, burst=3, clock=clock, sleep=clock.sleep)
    other = TokenBucket(key, rate_per_minute=60, burst=3, clock=clock, sleep=clock.sleep)
    assert bucket.try_acquire() == 0.0
    reset = clock.now + 5
    other.hold_until(reset)

    assert bucket.try_acquire() == pytest.approx(5.0)
    waited = bucket.acquire()
    # Tokens restart from zero at the reset, so the first call after it waits one interval.
    assert waited == pytest.approx(6.0)
    assert clock.now == pytest.approx(reset + 1.0)
    # No burst after the hold: the next token is one interval away, not three at once.
    assert other.try_acquire() == pytest.approx(1.0)


def test_an_earlier_hold_does_not_shorten_a_later_one(key, clock):
    bucket = TokenBucket(key, clock=clock, sleep=clock.sleep)
    bucket.hold_until(clock.now + 10)
    bucket.hold_until(clock.now + 3)
    assert bucket.try_acquire() == pytest.approx(10.0)


def test_acquire_gives_up_rather_than_wait_past_max_wait(key, clock):
    bucket = TokenBucket(key, max_wait=30, clock=clock, sleep=clock.sleep)
    bucket.hold_until(clock.now + 600)
    with pytest.raises(PmsRateLimited) as raised:
        bucket.acquire()
    assert raised.value.retry_at == pytest.approx(clock.now + 600)
    assert clock.sleeps == []  # failed at once instead of sleeping, then failing


def test_pacing_state_is_outside_the_callers_transaction(key):
    # Taking a token inside a transaction neither keeps the row locked until that transaction
    # ends nor is undone when it rolls back.
    bucket = TokenBucket(key, rate_per_minute=0.01, burst=2)
    done = threading.Event()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert bucket.try_acquire() == 0.0
        thread = threading.Thread(target=lambda: (TokenBucket(key).try_acquire(), done.set()))
        thread.start()
        assert done.wait(timeout=5), "the other thread was blocked by this transaction"
        raise RuntimeError("roll back")
    assert bucket.try_acquire() > 0  # both tokens stayed spent


# --- circuit breaker --------------------------------------------------------------------------
def test_breaker_opens_after_consecutive_failures(key, clock):
    breaker = CircuitBreaker(key, failure_threshold=3, reset_timeout=60, clock=clock)
    assert breaker.state() == CircuitState.CLOSED
    assert breaker.record_failure() is None
    assert breaker.record_failure() is None
    assert breaker.state() == CircuitState.CLOSED
    breaker.before_call()
    assert breaker.record_failure() == pytest.approx(clock.now + 60)

    status = breaker.status()
    assert status.state == CircuitState.OPEN
    assert status.consecutive_failures == 3
    assert status.retry_at == pytest.approx(clock.now + 60)
    with pytest.raises(PmsCircuitOpen) as raised:
        breaker.before_call()
    assert raised.value.retry_at == pytest.approx(clock.now + 60)
    assert raised.value.code == "PMS_UNAVAILABLE"


def test_a_success_resets_the_failure_count(key, clock):
    breaker = CircuitBreaker(key, failure_threshold=3, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state() == CircuitState.CLOSED


def test_half_open_lets_one_trial_through_and_success_closes(key, clock):
    breaker = CircuitBreaker(key, failure_threshold=1, reset_timeout=60, clock=clock)
    other_process = CircuitBreaker(key, failure_threshold=1, reset_timeout=60, clock=clock)
    breaker.record_failure()
    clock.now += 59
    with pytest.raises(PmsCircuitOpen):
        other_process.before_call()

    clock.now += 1
    assert breaker.state() == CircuitState.HALF_OPEN
    breaker.before_call()  # claims the trial
    with pytest.raises(PmsCircuitOpen):
        other_process.before_call()  # one trial at a time
    breaker.record_success()
    assert other_process.state() == CircuitState.CLOSED
    other_process.before_call()


def test_a_failed_trial_opens_the_circuit_again(key, clock):
    breaker = CircuitBreaker(key, failure_threshold=2, reset_timeout=30, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 30
    breaker.before_call()
    assert breaker.record_failure() == pytest.approx(clock.now + 30)
    assert breaker.state() == CircuitState.OPEN


def test_an_abandoned_trial_lapses(key, clock):
    breaker = CircuitBreaker(key, failure_threshold=1, reset_timeout=30, clock=clock)
    breaker.record_failure()
    clock.now += 30
    breaker.before_call()  # this process claims the trial, then dies
    clock.now += 29
    with pytest.raises(PmsCircuitOpen):
        breaker.before_call()
    clock.now += 1
    breaker.before_call()


def test_breaker_failures_survive_the_callers_rollback(key, clock):
    breaker = CircuitBreaker(key, failure_threshold=2, clock=clock)
    with pytest.raises(RuntimeError), transaction.atomic():
        breaker.record_failure()
        raise RuntimeError("the sync's transaction fails")
    breaker.record_failure()
    assert breaker.state() == CircuitState.OPEN


def test_state_of_an_unused_key_is_closed(key):
    started = time.monotonic()
    assert CircuitBreaker(key).status().state == CircuitState.CLOSED
    assert time.monotonic() - started < 2
