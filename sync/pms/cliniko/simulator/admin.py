"""`/__sim/...`: the control surface for tests and the CLI (faults, rate limit, clock,
data changes, counters). Loopback only, no auth, never counted, never faulted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .clock import parse_instant
from .faults import FaultPlan
from .responses import Response, json_response, message
from .store import MutationError, RecordNotFound

if TYPE_CHECKING:
    from .server import ClinikoSimulator

MUTATIONS = ("add_patient", "add_appointment", "edit", "cancel_appointment", "archive",
             "unarchive", "soft_delete", "merge_patients", "hard_delete", "deactivate_practitioner")


def handle(sim: ClinikoSimulator, method: str, path: str, body: bytes) -> Response:
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        return message(400, "The body is not JSON.")
    if not isinstance(data, dict):
        return message(400, "The body must be a JSON object.")
    name = path.removeprefix("/__sim/").strip("/")
    if name.startswith("records/") and method == "GET":
        return _record(sim, name)
    action = _ROUTES.get((method, name))
    if action is None:
        return message(404, f"No simulator endpoint {method} {path}.")
    try:
        return json_response(200, action(sim, data))
    except RecordNotFound as exc:
        return message(404, str(exc.args[0] if exc.args else exc))
    except (MutationError, ValueError, TypeError) as exc:
        return message(400, str(exc))


def _record(sim: ClinikoSimulator, name: str) -> Response:
    parts = name.split("/")
    if len(parts) != 3:
        return message(404, "Use /__sim/records/<resource>/<id>.")
    try:
        return json_response(200, sim.store.record(parts[1], parts[2]))
    except RecordNotFound as exc:
        return message(404, str(exc.args[0] if exc.args else exc))


def _health(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "api_url": sim.api_url, "counts": sim.store.counts()}


def _stats(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    return sim.stats.snapshot()


def _stats_reset(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    sim.stats.reset()
    return sim.stats.snapshot()


def _faults(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    return {**sim.faults.plan.to_json(), "queue": sim.faults.queued,
            "injected": dict(sim.faults.injected)}


def _set_faults(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    """Body: a FaultPlan (`rates`, `seed`, `timeout_seconds`, `paths`), plus `queue` (kinds
    for the next requests) or `clear: true`. A body with only `queue` keeps the plan."""
    if data.get("clear"):
        sim.faults.clear()
    if any(key in data for key in ("rates", "seed", "timeout_seconds", "paths")):
        sim.faults.configure(FaultPlan.from_json({**sim.faults.plan.to_json(), **data}))
    if data.get("queue"):
        sim.faults.queue(*data["queue"])
    return _faults(sim, data)


def _rate_limit(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    return sim.rate_limiter.to_json()


def _set_rate_limit(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    sim.rate_limiter.configure(int(data.get("limit", sim.rate_limiter.limit)),
                               window_seconds=data.get("window_seconds"))
    return sim.rate_limiter.to_json()


def _clock(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    return {"now": sim.clock.now_iso(), "frozen": sim.clock.frozen}


def _set_clock(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    """Body: `{"set": "2026-11-27T00:00:00Z"}` (freezes), `{"advance": 60}`, `{"thaw": true}`."""
    if "set" in data:
        sim.clock.set(parse_instant(str(data["set"])))
    if "advance" in data:
        sim.clock.advance(float(data["advance"]))
    if data.get("thaw"):
        sim.clock.thaw()
    return _clock(sim, data)


def _mutate(sim: ClinikoSimulator, data: dict[str, Any]) -> dict[str, Any]:
    """Body: `{"op": "<store method>", ...its keyword arguments}`, e.g.
    `{"op": "cancel_appointment", "appointment_id": "...", "reason": 30}`."""
    op = data.pop("op", None)
    if op not in MUTATIONS:
        raise ValueError(f"op must be one of {', '.join(MUTATIONS)}")
    result = getattr(sim.store, op)(**data)
    return {"op": op, "result": result}


_ROUTES: dict[tuple[str, str], Callable[[ClinikoSimulator, dict[str, Any]], dict[str, Any]]] = {
    ("GET", "health"): _health,
    ("GET", "stats"): _stats,
    ("POST", "stats/reset"): _stats_reset,
    ("GET", "faults"): _faults,
    ("POST", "faults"): _set_faults,
    ("GET", "rate_limit"): _rate_limit,
    ("POST", "rate_limit"): _set_rate_limit,
    ("GET", "clock"): _clock,
    ("POST", "clock"): _set_clock,
    ("POST", "mutations"): _mutate,
}
