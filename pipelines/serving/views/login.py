"""The views' guard: a logged-in Airflow user, by Airflow's own JWT (session cookie or Bearer)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from pipelines.serving.auth import PREFIX as API_KEY_PREFIX
from pipelines.serving.errors import ApiError

COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
NEEDED = "the Airsight views need an Airflow login"


def presented_token(request: Request) -> str | None:
    """A Bearer token wins over the session cookie, as in Airflow's own API."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


async def airflow_user(request: Request) -> Any:
    """The Airflow user the request's token names; 401 without a token, 401/403 for an expired or bad one."""
    token = presented_token(request)
    if not token:
        raise ApiError(401, f"{NEEDED}: sign in to Airflow's UI (or send 'Authorization: Bearer <token>' "
                       "from Airflow's /auth/token)")  # fmt: skip
    if token.startswith(API_KEY_PREFIX):
        raise ApiError(401, f"{NEEDED}; an Airsight API key does not open them")
    try:
        from airflow.api_fastapi.core_api.security import resolve_user_from_token
    except ImportError:  # pragma: no cover - the views are only mounted inside Airflow's API server
        raise ApiError(503, "the Airsight views run inside Airflow's API server") from None
    from fastapi import HTTPException

    try:
        return await resolve_user_from_token(token)
    except HTTPException as exc:
        raise ApiError(exc.status_code, f"Airflow login refused: {exc.detail}") from None
    except RuntimeError as exc:  # no auth manager: a host other than Airflow's API server
        raise ApiError(503, f"the Airsight views run inside Airflow's API server: {exc}") from None


async def page_user(request: Request) -> Any:
    """For the pages: the user, or the ApiError to answer with a sign-in page instead of JSON."""
    try:
        return await airflow_user(request)
    except ApiError as exc:
        return exc
