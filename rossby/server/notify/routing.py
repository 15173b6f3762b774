"""Per-kind routing: e-mail one way, phone another (e.g. SMTP and a webhook)."""

from __future__ import annotations

from rossby.contacts import ContactKind, NormalizedContact
from rossby.server.notify.base import Notifier, unsupported_kind


class RoutingNotifier(Notifier):
    """Sends each code through the notifier configured for its contact kind.

    A kind with no route is unsupported (``supports`` is False), so Register
    rejects it before any code goes out. The same notifier may serve both
    kinds; it is closed once.
    """

    def __init__(self, *, email: Notifier | None = None, phone: Notifier | None = None) -> None:
        self._routes: dict[ContactKind, Notifier] = {}
        if email is not None:
            self._routes[ContactKind.EMAIL] = email
        if phone is not None:
            self._routes[ContactKind.PHONE] = phone

    def __repr__(self) -> str:
        routes = ", ".join(f"{kind.value}={route!r}" for kind, route in self._routes.items())
        return f"RoutingNotifier({routes})"

    def route(self, kind: ContactKind) -> Notifier | None:
        return self._routes.get(kind)

    def supports(self, kind: ContactKind) -> bool:
        route = self._routes.get(kind)
        return route is not None and route.supports(kind)

    async def send_code(
        self, contact: NormalizedContact, code: str, ttl_seconds: int, *, device_name: str
    ) -> None:
        route = self._routes.get(contact.kind)
        if route is None:
            raise unsupported_kind(contact.kind)
        await route.send_code(contact, code, ttl_seconds, device_name=device_name)

    async def close(self) -> None:
        distinct = list({id(route): route for route in self._routes.values()}.values())
        errors: list[BaseException] = []
        for route in distinct:  # close every route even when one fails
            try:
                await route.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


__all__ = ["RoutingNotifier"]
