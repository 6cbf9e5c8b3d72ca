"""Alerts: conditions on prices, volume and order events, saved in SQLite and evaluated in the core.

    engine = AlertEngine(bus, AlertRepo(store), send=notify_firing, pro=lambda: plan == "pro")
    await engine.start()
    await engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal("70000"), channels=("desktop",)))
"""

from app.alerts.engine import TOPIC_ALERT_FIRED, TOPIC_ALERTS_CHANGED, AlertEngine, AlertInvalid, Firing
from app.alerts.model import CHANNELS, FREE_ACTIVE_LIMIT, Alert, AlertKind, describe, parse_decimal, validate
from app.alerts.repo import AlertRepo

__all__ = [
    "CHANNELS",
    "FREE_ACTIVE_LIMIT",
    "TOPIC_ALERTS_CHANGED",
    "TOPIC_ALERT_FIRED",
    "Alert",
    "AlertEngine",
    "AlertInvalid",
    "AlertKind",
    "AlertRepo",
    "Firing",
    "describe",
    "parse_decimal",
    "validate",
]
