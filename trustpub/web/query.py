"""Query parameters that must be whole numbers: ASCII digits in a range, 400 otherwise.

``str.isdigit`` accepts ``²`` and other Unicode digits that ``int`` then refuses or
reads differently, and ``int`` of an unbounded digit string costs time (and past 4300
digits raises): the text is checked before it is converted.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter ``name`` (``default`` when absent), from ``low`` to
    ``high``; anything else is a 400 that says what was expected."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if (
        not raw.isascii()
        or not raw.isdigit()
        or len(raw.lstrip("0")) > len(str(high))
        or not low <= int(raw) <= high
    ):
        raise HTTPException(400, f"`{name}` must be an integer from {low} to {high}")
    return int(raw)
