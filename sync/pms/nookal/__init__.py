"""Nookal API v2 (../shared/reference/nookal/README.md): client, mapper, adapter, simulator."""
