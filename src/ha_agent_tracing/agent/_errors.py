r"""The answer to a request body that does not validate: always a 422, never a 500.

FastAPI's own handler echoes each error's ``input`` back as JSON. Two kinds of
input cannot be written out: text holding a lone surrogate (``"x\ud800y"`` is
valid JSON escaping, but not Unicode that UTF-8 can encode), the non-finite
numbers Python's JSON reader accepts (``NaN``, ``1e400``), and a body that is
not JSON and not UTF-8 (kept as bytes). Its handler then raises while
answering, and the client gets a 500. Here such values are replaced before the
answer is written: a lone surrogate or an undecodable byte by U+FFFD, a
non-finite number by its name as text.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["invalid_request"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def _writable(value: Any) -> Any:
    """``value`` with every string UTF-8 can encode and every number JSON can hold."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_writable(key): _writable(item) for key, item in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list | tuple):
        return [_writable(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with FastAPI's error list, made writable."""
    if not isinstance(exc, RequestValidationError):
        raise exc
    # Bytes before encoding (the encoder decodes them strictly); strings after it (it str()s objects).
    detail = _writable(jsonable_encoder(_writable(exc.errors())))
    return JSONResponse(status_code=422, content={"detail": detail})
