"""The ``X-OJS-Tenant`` request header (ojs-multi-tenancy §5.3): the tenant a request acts
for, acted for (:func:`~ojs_actors.system.tenancy.acting_as`) while the request is served,
so both serving paths (Quart and :mod:`.direct`) and every layer below see it."""

from __future__ import annotations

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from ..core import OJSError
from ..system.tenancy import acting_as, parse_tenant
from .asgi import header, send_error

TENANT_HEADER = b"x-ojs-tenant"


class TenantContext:
    """ASGI layer: a malformed header is a 400 here, before any route runs."""

    def __init__(self, app: ASGIFramework) -> None:
        self._app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        value = header(scope, TENANT_HEADER) if scope["type"] == "http" else None
        if value is None:
            await self._app(scope, receive, send)
            return
        try:
            tenant = parse_tenant(value.strip(), "X-OJS-Tenant")
        except OJSError as error:
            await send_error(send, scope, error)  # type: ignore[arg-type]
            return
        with acting_as(tenant):
            await self._app(scope, receive, send)


__all__ = ["TENANT_HEADER", "TenantContext"]
