"""A Nookal API v2 simulator: a small deterministic clinic served over real HTTP on loopback,
with Nookal's envelope, `api_key` form field, `settings.nextPage` paging, and failures on
demand (a `status: "failure"` inside HTTP 200, or HTTP 5xx). See README.md."""

from .server import NookalSimulator
from .store import RESULT_KEYS, NookalStore

__all__ = ["RESULT_KEYS", "NookalSimulator", "NookalStore"]
