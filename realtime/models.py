"""Tables of the PostgreSQL channel layer (`realtime.layers.PostgresChannelLayer`).

The layer reads and writes them with its own SQL, not the ORM; the models exist so that
migrations create them and `TransactionTestCase` flushes them. Neither table is tenant-owned:
rows are transient transport (seconds to a day), and the messages carry their own tenant ids.
"""

from __future__ import annotations

from django.db import models


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
