"""Clerk organization roles to Routiq roles."""

from __future__ import annotations

from clinics.models import Role

# Clerk's defaults, with and without the `org:` prefix (instances before December 2023 use
# admin / basic_member; v2 tokens drop the prefix).
DEFAULT_ROLE_MAP: dict[str, str] = {
    "admin": Role.ADMIN,
    "org:admin": Role.ADMIN,
    "member": Role.STAFF,
    "org:member": Role.STAFF,
    "basic_member": Role.STAFF,
    "org:basic_member": Role.STAFF,
}

RANK = {Role.READ_ONLY: 0, Role.STAFF: 1, Role.ADMIN: 2}


def normalise_role(raw: str | None, extra: dict[str, str] | None = None) -> str | None:
    """The Routiq role for a Clerk role, or None when the role is unknown (no access)."""
    if not raw:
        return None
    mapping = {**DEFAULT_ROLE_MAP, **(extra or {})}
    role = mapping.get(raw) or mapping.get(raw.removeprefix("org:")) or mapping.get(f"org:{raw}")
    return role if role in RANK else None


def role_allows(role: str, required: str) -> bool:
    return RANK.get(role, -1) >= RANK[required]
