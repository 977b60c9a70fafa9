"""Property-based tests of the whole API against its own OpenAPI schema (Schemathesis).

Every operation in `/api/schema/` gets generated requests, called in-process over WSGI as org
A's admin; about half of them use org A's real id (and real patient ids) so the handlers run
past the access checks. Each response must not be a 5xx, must match the documented status
codes, content type and body schema, and must be the success or the error envelope.

The run is bounded and derandomized: the same cases every time, in a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import strategies as st
from model_bakery import baker

from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from patients.models import Patient
from patients.profiles import profiles_refresh_all
from routiq.api.errors import ERROR_CODES
from routiq.api.throttling import WindowRateThrottle
from sync.models import SyncRun

# Valid requests per operation, then requests that break the schema on purpose.
RUNS = {schemathesis.GenerationMode.POSITIVE: 40, schemathesis.GenerationMode.NEGATIVE: 20}


def _settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # CI sees the same cases every run
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )


@pytest.fixture
def one_test_transaction() -> Iterator[None]:
    """Keep the test's connection (and its transaction) across WSGI requests.

    Django's test client does the same: a real WSGI handler closes "old" connections when a
    request ends, which inside the test's transaction would throw the transaction away.
    """
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of calls a minute from one caller are the point here, not abuse; nor should
    they count against org A in a shared cache for the tests that follow."""
    monkeypatch.setattr(WindowRateThrottle, "allow_request", lambda self, request, view: True)


def envelope_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Success bodies say so; every error, documented or not, is the error envelope. (A
    success documented as CSV is checked against its schema by Schemathesis itself.)"""
    content_type = response.headers.get("content-type", ["(none)"])[0]
    if response.status_code < 400 and content_type.startswith("text/csv"):
        documented = case.operation.definition.raw["responses"].get(str(response.status_code), {})
        assert "text/csv" in documented.get("content", {}), f"undocumented CSV from {case.path}"
        return
    assert content_type.startswith("application/json"), f"{response.status_code} answered as {content_type}"
    body = json.loads(response.content)
    if response.status_code < 400:
        assert body["success"] is True, body
        return
    assert body["success"] is False, body
    error = body["error"]
    assert error["code"] in ERROR_CODES, error
    assert ERROR_CODES[error["code"]][0] == response.status_code, error
    assert error["request_id"] == response.headers["x-request-id"][0], error
    assert isinstance(error["message"], str) and error["message"], error


@dataclass
class Tally:
    statuses: dict[str, list[int]] = field(default_factory=dict)

    def add(self, label: str, status: int) -> None:
        self.statuses.setdefault(label, []).append(status)

    @property
    def calls(self) -> int:
        return sum(map(len, self.statuses.values()))


def _cases(
    operation: Any,
    mode: schemathesis.GenerationMode,
    *,
    org_id: str,
    patient_ids: list[int],
    real_ids: dict[str, int],
) -> st.SearchStrategy:
    """Half random path parameters, half the real organization (and real object ids)."""
    names = {parameter.name for parameter in operation.path_parameters}
    if "org_id" not in names:
        return operation.as_strategy(mode)

    def real(patient_id: int) -> st.SearchStrategy:
        fixed: dict[str, Any] = {"org_id": org_id}
        if "patient_id" in names:
            fixed["patient_id"] = patient_id
        fixed.update({name: value for name, value in real_ids.items() if name in names})
        return operation.as_strategy(mode, path_parameters=fixed)

    return st.one_of(operation.as_strategy(mode), st.sampled_from(patient_ids).flatmap(real))


def _exercise(
    operation: Any,
    cases: st.SearchStrategy,
    *,
    max_examples: int,
    headers: Callable[[], dict[str, str]],
    foreign_patient_id: int,
    tally: Tally,
) -> None:
    @_settings(max_examples)
    @hypothesis.given(case=cases)
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers(), additional_checks=[envelope_shape])
        tally.add(operation.label, response.status_code)
        if (case.path_parameters or {}).get("patient_id") == foreign_patient_id:
            # 404 like a missing patient; 403 only when a mismatched X-Organization-ID header
            # (now documented, so generated) refuses the call before any lookup.
            assert response.status_code in (403, 404), "another tenant's patient was reachable"
            if response.status_code == 403:
                assert response.json()["error"]["code"] == "ORG_ACCESS_DENIED"

    run()


def test_every_operation_conforms_to_the_schema(world, token_for, one_test_transaction, unthrottled):
    own = [
        baker.make(Patient, organization=world.org_a, pms="cliniko", external_id=f"st{n}").pk
        for n in range(3)
    ]
    foreign = baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="st-b").pk
    # A Cliniko connection nobody answers on (the handlers only read its state), and a run.
    with tenant_scope(world.org_a):
        connection = pms_connection_set(
            world.org_a, kind="cliniko", api_key="schemathesis0123456789-au1", base_url="http://127.0.0.1:9"
        )
        run = baker.make(SyncRun, organization=world.org_a, connection=connection, status="completed")
        profiles_refresh_all(world.org_a)  # the real patients have profiles to read
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    operations = [result.ok() for result in schema.get_all_operations()]

    def headers() -> dict[str, str]:
        # Minted per call: the token lives a minute, and the run must not depend on its speed.
        return {"Authorization": f"Bearer {token_for(world.org_a)}"}

    tallies = {mode: Tally() for mode in RUNS}
    failures = []
    for mode, max_examples in RUNS.items():
        for operation in operations:
            cases = _cases(
                operation, mode, org_id=world.org_a.pk, patient_ids=[*own, foreign], real_ids={"run_id": run.pk}
            )
            try:
                _exercise(
                    operation,
                    cases,
                    max_examples=max_examples,
                    headers=headers,
                    foreign_patient_id=foreign,
                    tally=tallies[mode],
                )
            except Exception as exc:  # every operation's failure in one report
                failures.append(f"[{mode.value}] {operation.label}: {exc}")

    for mode, tally in tallies.items():
        summary = {label: sorted(set(statuses)) for label, statuses in tally.statuses.items()}
        print(f"\nschemathesis {mode.value}: {len(operations)} operations, {tally.calls} calls: {summary}")
    assert not failures, "\n\n".join(failures)
    assert len(operations) >= 6
    # The real ids got past the access checks: every handler itself ran.
    positive = tallies[schemathesis.GenerationMode.POSITIVE].statuses
    for operation in operations:
        assert any(status < 300 for status in positive[operation.label]), (operation.label, positive)
