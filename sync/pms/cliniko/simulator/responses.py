"""Response bodies the simulator sends, JSON and otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, **headers: str) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), JSON, dict(headers))


def message(status: int, text: str, **headers: str) -> Response:
    """Cliniko's error shape: `{"message": ...}` (reference §6)."""
    return json_response(status, {"message": text}, **headers)


def html_page(status: int, title: str, text: str) -> Response:
    body = (f"<!DOCTYPE html>\n<html>\n<head><title>{title}</title></head>\n<body>\n"
            f"<h1>{title}</h1>\n<p>{text}</p>\n</body>\n</html>\n")
    return Response(status, body.encode(), HTML)


def not_found_page() -> Response:
    # A wrong route answered with an HTML 404 page (issue #273).
    return html_page(404, "The page you were looking for doesn't exist (404)",
                     "You may have mistyped the address or the page may have moved.")


def throttled(reset: int) -> Response:
    # The 429 body is UNKNOWN in the reference; plain text makes a client cope with non-JSON.
    return Response(429, b"Retry later\n", TEXT, {"X-RateLimit-Reset": str(reset)})


def list_body(key: str, items: list[bytes], total: int, links: dict[str, str]) -> bytes:
    return b"".join((
        b'{"', key.encode(), b'":[', b",".join(items), b'],"total_entries":',
        str(total).encode(), b',"links":', json.dumps(links, separators=(",", ":")).encode(), b"}",
    ))
