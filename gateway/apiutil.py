"""What every `/api/…` handler reads off a request, written once: query arguments, the acting name, a JSON body.

Used by :mod:`gateway.web` and the sub-routes it dispatches to (:mod:`gateway.cards.web`,
:mod:`gateway.reconcile.web`, :mod:`gateway.reconcile.link`). Each raises ValueError with a message for the
caller, which the API answers 400 (nothing is changed).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

#: A name in `X-Actor`: short and plain, so that it can be stored and shown as it is.
ACTOR: Final = re.compile(r"[A-Za-z0-9_.@-]{1,48}")


def query_arg(request: Any, name: str) -> str | None:
    """The first value of query argument `name`, decoded as UTF-8, or None."""
    values = request.args.get(name.encode()) if request.args else None
    return values[0].decode("utf-8") if values else None


def actor_of(request: Any) -> str:
    """`api:` and the `X-Actor` header (default `finance`); one that is not a short plain name is refused."""
    header = request.getHeader(b"x-actor")
    if header is None:
        return "api:finance"
    actor = header.decode("latin-1")
    if not ACTOR.fullmatch(actor):
        raise ValueError(f"X-Actor must be 1-48 of A-Z a-z 0-9 _ . @ -, not {actor[:60]!r}")
    return f"api:{actor}"


def json_object(request: Any, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is `{}`), read up to `max_bytes`."""
    data = request.content.read(max_bytes + 1) if request.content is not None else b""
    if len(data) > max_bytes:
        raise ValueError(f"request body over {max_bytes} bytes")
    try:
        body = json.loads(data or b"{}")
    except ValueError as exc:
        raise ValueError(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the request body is a JSON object")
    return body
