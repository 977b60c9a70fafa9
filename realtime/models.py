"""Tables of the live updates.

- The PostgreSQL channel layer's (`realtime.layers.PostgresChannelLayer`): it reads and writes
  them with its own SQL, not the ORM; the models exist so that migrations create them and
  `TransactionTestCase` flushes them. Neither is tenant-owned: rows are transient transport
  (seconds to a day), and the messages carry their own tenant ids.
- The per-organization event log (`Event`, numbered by `EventCounter`), written by
  `realtime.events.publish`: tenant-owned, under row-level security like every such table.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from clinics.tenancy import TenantModel


class ChannelMessage(models.Model):
    """A message waiting on a channel; receiving it deletes the row."""

    id = models.BigAutoField(primary_key=True)
    channel = models.TextField()  # "<prefix>:<channel name>"
    payload = models.BinaryField()  # msgpack
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "realtime_channel_message"
        indexes = [models.Index(fields=["channel", "id"], name="realtime_message_channel_id")]

    def __str__(self) -> str:
        return f"{self.channel} #{self.id}"


class ChannelGroupMember(models.Model):
    """A channel's membership of a group, renewed by `group_add` and dropped when it expires."""

    id = models.BigAutoField(primary_key=True)
    group_name = models.TextField()  # "<prefix>:<group name>"
    channel = models.TextField()  # "<prefix>:<channel name>"
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "realtime_channel_group"
        constraints = [
            models.UniqueConstraint(fields=["group_name", "channel"], name="realtime_group_channel_unique")
        ]

    def __str__(self) -> str:
        return f"{self.group_name} <- {self.channel}"


class EventCounter(TenantModel):
    """The last sequence number given to an organization's events.

    The publisher bumps it with one UPDATE ... RETURNING in the transaction that writes the
    event, so the row stays locked until that transaction ends: concurrent publishers of one
    organization queue on it, and a rolled-back event gives its number back. Sequence numbers
    are therefore contiguous, and every number below a committed one is committed too.
    """

    organization = models.OneToOneField(
        "clinics.Organization", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_seq = models.BigIntegerField(default=0)

    class Meta:
        db_table = "realtime_event_counter"

    def __str__(self) -> str:
        return f"{self.organization_id} at {self.last_seq}"


class Event(TenantModel):
    """One event of an organization's live stream: the source of truth for what clients missed
    (the channel layer only carries copies, and may drop them)."""

    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "realtime_event"
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="realtime_event_org_seq_unique"),
        ]
        # For the retention sweep (older than REALTIME_EVENT_RETENTION_HOURS, per organization).
        indexes = [models.Index(fields=["organization", "created_at"], name="realtime_event_org_created")]

    def __str__(self) -> str:
        return f"{self.organization_id} #{self.seq} {self.type}"
