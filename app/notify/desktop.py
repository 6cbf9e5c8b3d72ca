"""Native desktop notifications through desktop-notifier (freedesktop Notify over D-Bus on Linux).

Decisions:
* desktop-notifier never raises when a notification cannot be shown: it logs a
  warning and carries on. A notification it did hand to the notification
  server is reported through `on_dispatched`, so that callback is how we know
  it was delivered.
* Without a notification service (no session D-Bus, no notification daemon)
  the `fallback(title, text)` hook, set by the UI to show a tray balloon, gets
  the message and it counts as delivered. Without a fallback it fails with a
  sentence saying what to install; that is a property of the machine, not an
  outage, so the outbox does not keep retrying it (the user can, from the list
  of undelivered messages).
* A click calls `on_click(target)` on the event loop (desktop-notifier's D-Bus
  listener runs there), so the UI can raise its window and show the symbol,
  order or billing panel the message is about.
* This module never imports Qt: the tray is the UI's business.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from app.notify.channel import ChannelError, NotConfigured, guarded
from app.notify.message import Message, Severity, Target
from app.resilience.errors import FailureKind
from app.resilience.guard import Guard
from app.settings import DesktopNotifySettings

__all__ = ["APP_NAME", "DesktopChannel"]

log = logging.getLogger(__name__)

APP_NAME = "Meridian Terminal"
SERVICE = "Desktop"

ClickHandler = Callable[[Target | None], Any]
Fallback = Callable[[str, str], Any]


def _no_service_sentence() -> str:
    if sys.platform.startswith("linux"):
        return (
            "No desktop notification service answered on the session D-Bus: run a desktop that shows "
            "notifications (GNOME, KDE Plasma) or a notification daemon such as dunst."
        )
    if sys.platform == "darwin":
        return "macOS did not accept the notification: allow notifications for Meridian Terminal in System Settings."
    return "Windows did not accept the notification: allow notifications for Meridian Terminal in Settings → System."


class DesktopChannel:
    name = "desktop"

    def __init__(
        self,
        settings: DesktopNotifySettings,
        guard: Guard,
        *,
        on_click: ClickHandler | None = None,
        fallback: Fallback | None = None,
        notifier: Any = None,
        app_name: str = APP_NAME,
    ) -> None:
        self.settings = settings
        self.guard = guard
        self.on_click = on_click
        self.fallback = fallback
        self._notifier = notifier
        self._app_name = app_name

    def __repr__(self) -> str:
        return f"<DesktopChannel enabled={self.settings.enabled} fallback={'yes' if self.fallback else 'no'}>"

    def update(self, settings: DesktopNotifySettings) -> None:
        self.settings = settings

    async def close(self) -> None:
        return None

    def _get_notifier(self) -> Any:
        if self._notifier is None:
            from desktop_notifier import DesktopNotifier  # noqa: PLC0415 - loads a platform backend

            self._notifier = DesktopNotifier(app_name=self._app_name)
        return self._notifier

    async def send(self, message: Message, progress: str = "") -> None:
        if not self.settings.enabled:
            raise NotConfigured("Desktop notifications are off: turn them on in Settings → Notifications.")
        await guarded(self.guard, lambda: self._attempt(message), service=SERVICE, what=f"desktop {message.message_id}")

    async def _attempt(self, message: Message) -> None:
        from desktop_notifier import Notification, Urgency  # noqa: PLC0415

        dispatched = False

        def on_dispatched() -> None:
            nonlocal dispatched
            dispatched = True

        target = message.target

        def on_clicked() -> None:
            if self.on_click is not None:
                try:
                    self.on_click(target)
                except Exception:  # a broken UI callback must not break the D-Bus listener
                    log.exception("desktop: the click handler failed")

        urgency = {Severity.CRITICAL: Urgency.Critical, Severity.WARNING: Urgency.Normal}.get(
            message.severity, Urgency.Normal
        )
        notification = Notification(
            title=message.title,
            message=message.short_text(),
            urgency=urgency,
            on_dispatched=on_dispatched,
            on_clicked=on_clicked,
        )
        try:
            await self._get_notifier().send_notification(notification)
        except Exception as exc:  # it should not raise, but a backend bug must become a sentence
            log.debug("desktop: notifier raised %s", type(exc).__name__)
            dispatched = False
        if dispatched:
            return
        if self.fallback is not None:
            try:
                self.fallback(message.title, message.short_text())
            except Exception:
                log.exception("desktop: the fallback failed")
                raise ChannelError(
                    "Neither the desktop notification service nor the tray could show the notification; "
                    "it is listed under undelivered messages.",
                    kind=FailureKind.BUSINESS,
                ) from None
            log.info("desktop: no notification service; shown through the fallback instead")
            return
        raise ChannelError(_no_service_sentence(), kind=FailureKind.BUSINESS)
