"""A Cliniko API simulator: the synthetic clinic served over real HTTP on loopback, with
Cliniko's auth, pagination, filters, rate limit, and faults and data changes on demand.

    with ClinikoSimulator(spec=ClinicSpec(patients=200)) as sim:
        requests.get(f"{sim.api_url}/patients", auth=(sim.api_key, ""), headers=...)

Behaviour follows ../shared/reference/cliniko/README.md; where it says UNKNOWN, the choice
made here is noted where it is implemented (handler, filters, responses, store).
"""

from .clock import SimClock
from .faults import FaultInjector, FaultKind, FaultPlan
from .server import ClinikoSimulator, default_api_key
from .store import ClinikoStore, MutationError, RecordNotFound
from .traffic import RateLimiter, TrafficStats

__all__ = [
    "ClinikoSimulator",
    "ClinikoStore",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "MutationError",
    "RateLimiter",
    "RecordNotFound",
    "SimClock",
    "TrafficStats",
    "default_api_key",
]
