"""The Nookal simulator against the recorded examples: same envelope, same keys, same value
types; the api_key gate; paging by `settings.nextPage`; injected faults."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sync.pms.nookal.simulator import NookalSimulator, NookalStore
from sync.pms.nookal.tests.conftest import example


def call(sim: NookalSimulator, function: str, **form: Any) -> requests.Response:
    form.setdefault("api_key", sim.api_key)
    return requests.post(f"{sim.api_url}/{function}", data=form, timeout=5)


def types(value: Any) -> Any:
    """The shape of a JSON value: key -> type, recursively (None counts as any scalar)."""
    if isinstance(value, dict):
        return {key: types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [types(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize(
    ("function", "fixture", "key"),
    [("getLocations", "get_locations.json", "locations"), ("getPractitioners", "get_practitioners.json", "practitioners")],
)
def test_envelope_and_records_match_the_examples(nookal_simulator, function, fixture, key):
    recorded = example(fixture)
    body = call(nookal_simulator, function).json()
    assert set(body) == set(recorded)
    assert set(body["data"]) == set(recorded["data"]) and body["data"]["api_call"] == function
    assert set(body["details"]) == set(recorded["details"])
    assert set(body["settings"]) == set(recorded["settings"])
    assert body["status"] == "success"
    for name in ("currentItems", "totalItems"):
        assert type(body["details"][name]) is type(recorded["details"][name])
    assert isinstance(body["settings"]["currentPage"], str | int)
    assert isinstance(body["settings"]["pageLength"], int)
    mine, theirs = body["data"]["results"][key], recorded["data"]["results"][key]
    assert mine and all(set(record) == set(theirs[0]) for record in mine)
    expected = {name: types(value) for name, value in theirs[0].items() if value is not None}
    for record in mine:
        assert {name: types(record[name]) for name in expected} == expected


def test_record_values_are_nookal_typed(nookal_simulator):
    for function, key in (("getPatients", "patients"), ("getAppointments", "appointments")):
        records = call(nookal_simulator, function).json()["data"]["results"][key]
        assert records and all(isinstance(v, str) for record in records for v in record.values())
    appointments = call(nookal_simulator, "getAppointments").json()["data"]["results"]["appointments"]
    for flag in ("arrived", "DNA", "cancelled", "invoiceGenerated"):
        assert {a[flag] for a in appointments} <= {"0", "1"}


def test_missing_key_answers_the_recorded_failure_in_a_200(nookal_simulator):
    response = call(nookal_simulator, "verify", api_key="")
    assert response.status_code == 200
    assert response.json() == example("verify_failure_missing_api_key.json")


def test_wrong_key_is_a_failure_in_a_200(nookal_simulator):
    response = call(nookal_simulator, "getPatients", api_key="wrong")
    assert response.status_code == 200 and response.json()["status"] == "failure"


def test_get_with_query_string_works_too(nookal_simulator):
    sim = nookal_simulator
    response = requests.get(f"{sim.api_url}/getLocations", params={"api_key": sim.api_key}, timeout=5)
    assert response.json()["status"] == "success" and sim.methods["GET"] == 1


def test_paging_by_next_page(nookal_simulator_factory):
    sim = nookal_simulator_factory(store=NookalStore(patients=5))
    seen, page = [], 1
    while page is not None:
        body = call(sim, "getPatients", page=page, page_length=2).json()
        assert body["settings"]["currentPage"] == str(page) and body["settings"]["pageLength"] == 2
        assert body["details"]["totalItems"] == 5
        seen += body["data"]["results"]["patients"]
        page = body["settings"]["nextPage"]
    assert [p["ID"] for p in seen] == ["1", "2", "3", "4", "5"]
    assert call(sim, "getPatients", page_length=500).json()["settings"]["pageLength"] == 200


def test_same_seed_same_clinic():
    assert NookalStore(seed=3).records("getAppointments") == NookalStore(seed=3).records("getAppointments")


def test_injected_faults_answer_one_request_each(nookal_simulator):
    sim = nookal_simulator
    sim.queue_fault("failure")
    sim.queue_fault("503")
    failed = call(sim, "getLocations")
    assert failed.status_code == 200 and failed.json()["status"] == "failure"
    assert call(sim, "getLocations").status_code == 503
    assert call(sim, "getLocations").json()["status"] == "success"
    with pytest.raises(ValueError):
        sim.queue_fault("teapot")


def test_unknown_function_and_path(nookal_simulator):
    assert call(nookal_simulator, "getNothing").status_code == 404
    assert requests.post(f"{nookal_simulator.base_url}/v1/patients", timeout=5).status_code == 404
