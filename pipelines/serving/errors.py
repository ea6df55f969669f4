"""Every error the serving API answers has one shape: ``{"message": ..., "errors": [{"field", "reason"}]}``.

Handlers raise ``ApiError`` (a status, a message and the request field at fault); invalid bodies
get 422 naming each field and the reason; anything unexpected is logged and answers 500
without its details.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def error_response(status: int, message: str, errors: list[dict] | None = None, headers=None) -> JSONResponse:
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


async def api_error(request: Request, exc: ApiError):
    errors = [{"field": exc.field, "reason": exc.message}] if exc.field else None
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.message, errors, headers)


async def invalid(request: Request, exc: RequestValidationError):
    errors = []
    for e in exc.errors():
        field = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        reason = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            reason = f"malformed JSON: {e.get('ctx', {}).get('error', 'cannot parse')}"
        errors.append({"field": field, "reason": reason})
    summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
    return error_response(422, f"invalid request: {summary}", errors)


async def http_error(request: Request, exc: StarletteHTTPException):
    return error_response(exc.status_code, str(exc.detail))


async def unexpected(request: Request, exc: Exception):
    logging.getLogger("airsight.serving").exception("unhandled error", extra={"path": request.url.path})
    return error_response(500, "internal error; see the server log")


HANDLERS = {
    ApiError: api_error,
    RequestValidationError: invalid,
    StarletteHTTPException: http_error,
    Exception: unexpected,
}
