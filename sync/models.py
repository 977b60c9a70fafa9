from __future__ import annotations

from django.db import models


class PacingState(models.Model):
    """One token bucket per PMS user, shared by every process (sync/pms/pacing.py).

    Keyed by a hash of the credential, never the credential, and deliberately without an
    organization column: the budget belongs to the PMS user, whichever tenant spends it. Times
    are Unix seconds from the caller's clock (so tests can run on a fake one).
    """

    key = models.CharField(primary_key=True, max_length=64)
    tokens = models.FloatField()
    updated_at = models.FloatField(help_text="Unix time the tokens were last counted")
    hold_until = models.FloatField(default=0, help_text="Unix time before which nobody may call")

    def __str__(self) -> str:
        return f"pacing {self.key[:12]}…"


class BreakerState(models.Model):
    """One circuit breaker per PMS credential, shared by every process (sync/pms/pacing.py)."""

    key = models.CharField(primary_key=True, max_length=64)
    consecutive_failures = models.IntegerField(default=0)
    open_until = models.FloatField(
        null=True, blank=True, help_text="Unix time the open circuit lets a trial call through; null: closed"
    )
    trial_until = models.FloatField(
        null=True, blank=True, help_text="Unix time a half-open trial call's claim lapses"
    )

    def __str__(self) -> str:
        return f"breaker {self.key[:12]}…"
