"""Email notifications through a real SMTP server (aiosmtpd) on 127.0.0.1: STARTTLS, implicit
TLS, AUTH LOGIN/PLAIN, refused logins, a server that is down and comes back, a server that
offers no STARTTLS. Certificates are verified (the test's CA file), as in production.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from app.notify.email import EmailChannel, message_id_header, send_test_email
from app.notify.outbox import Backoff, Outbox
from app.notify.service import NotificationService
from app.resilience.guard import GuardRegistry
from app.settings import EmailSettings
from app.store import Store
from tests.integration.notify_support import (  # noqa: F401 - store_fixture is the `store` fixture
    HOST,
    SMTP_PASSWORD,
    SMTP_USER,
    WRONG_PASSWORD,
    Secrets,
    SmtpServer,
    eventually,
    fast_guards,
    free_port,
    make_certificate,
    settled,
    store_fixture,
    track,
)

RECIPIENT = "trader@example.com"
TRADE = {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.25"), "price": Decimal("64123.45"),
         "venue": "binance", "order_id": "mt00000000000000000001"}
NOTE = '<img src=x onerror="alert(1)"> sell half'


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def starttls_server(cert: tuple[Path, Path]) -> Iterator[SmtpServer]:
    with SmtpServer("starttls", cert) as srv:
        yield srv


def settings_for(port: int, security: str = "starttls", **kw: object) -> EmailSettings:
    return EmailSettings(host=HOST, port=port, security=security, username=SMTP_USER, sender=SMTP_USER,
                         recipients=(RECIPIENT,), **kw)  # type: ignore[arg-type]


def email_service(store: Store, settings: EmailSettings, cert: tuple[Path, Path], password: str = SMTP_PASSWORD,
                  guards: GuardRegistry | None = None, backoff: Backoff | None = None
                  ) -> NotificationService:
    guards = guards or fast_guards()
    channel = EmailChannel(settings, Secrets({"notify_smtp": password}), guards.get("notify:email"),
                           ca_file=str(cert[0]), timeout=3.0)
    backoff = backoff or Backoff(first=0.1, cap=0.2)
    return track(NotificationService(Outbox(store, backoff=backoff), [channel], idle_poll=0.05))


async def test_an_alert_arrives_over_starttls_with_login_text_and_html(
    store: Store, starttls_server: SmtpServer, cert: tuple[Path, Path]
) -> None:
    service = email_service(store, settings_for(starttls_server.port), cert)
    await service.start()
    alert = {"symbol": "BTC/USDT", "price": Decimal("70012.50"), "condition": "above", "threshold": Decimal("70000"),
             "note": NOTE}
    await service.notify("price_alert", alert, ["email"], message_id="alert:7:1")
    assert await eventually(lambda: starttls_server.box.parsed())
    assert await service.wait_idle()
    (msg,) = starttls_server.box.parsed()
    assert starttls_server.box.tls_at_data == [True]  # the message went inside TLS
    assert starttls_server.box.logins == [(SMTP_USER, True)]
    assert starttls_server.box.envelopes == [(SMTP_USER, [RECIPIENT])]
    assert msg["Subject"] == "BTC/USDT above 70,000"
    assert msg["From"] == SMTP_USER and msg["To"] == RECIPIENT
    # Derived from the message id, so a resent copy carries the same one.
    assert msg["Message-ID"] == message_id_header("alert:7:1", SMTP_USER)
    assert msg["Message-ID"].startswith("<meridian.alert-7-1.") and msg["Message-ID"].endswith("@meridian.test>")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "BTC/USDT is 70,012.50 USDT: above your alert at 70,000." in text
    assert NOTE in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; sell half" in html and "<img" not in html
    (row,) = await service.outbox.rows("alert:7:1")
    assert (row.status, row.attempts) == ("delivered", 1)
    await service.stop()


async def test_a_wrong_password_fails_once_with_a_sentence_and_never_leaks(
    store: Store, starttls_server: SmtpServer, cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    service = email_service(store, settings_for(starttls_server.port), cert, password=WRONG_PASSWORD)
    await service.start()
    await service.notify("trade_executed", TRADE, ["email"], message_id="fill:1")
    await settled(service, "fill:1", "email")
    await asyncio.sleep(0.3)
    (row,) = await service.undelivered()  # several backoff periods: a refused login is not retried
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.reason == ("The SMTP server refused the login: check the username and the password in "
                          "Settings → Notifications.")
    assert starttls_server.box.logins and all(not ok for _, ok in starttls_server.box.logins)
    assert starttls_server.box.messages == []
    await service.stop()
    everything = "\n".join(
        [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
        + [repr(c) for c in service.channels.values()] + list(capsys.readouterr())
    )
    assert WRONG_PASSWORD not in everything and SMTP_PASSWORD not in everything
    assert "refused the login" in everything  # the sentence itself was logged


async def test_a_server_that_is_down_gets_the_message_exactly_once_when_it_is_back(
    store: Store, cert: tuple[Path, Path]
) -> None:
    port = free_port()
    service = email_service(store, settings_for(port), cert, backoff=Backoff(first=0.15, cap=0.3))
    await service.start()
    await service.notify("trade_executed", TRADE, ["email"], message_id="fill:2")
    await settled(service, "fill:2", "email")
    (row,) = await service.undelivered()
    assert row.status == "pending" and row.attempts >= 1
    assert row.reason == (f"The SMTP server {HOST}:{port} could not be reached (connection refused); "
                          "the email will be sent when it answers.")
    with SmtpServer("starttls", cert, port=port) as srv:
        assert await eventually(lambda: srv.box.parsed())
        assert await service.wait_idle()
        await service.notify("trade_executed", TRADE, ["email"], message_id="fill:2")  # a replayed fill
        await asyncio.sleep(0.5)
        assert len(srv.box.parsed()) == 1
        assert srv.box.parsed()[0]["Subject"] == "Bought 0.25 BTC at 64,123.45 USDT"
    (row,) = await service.outbox.rows("fill:2")
    assert row.status == "delivered" and row.attempts >= 2
    await service.stop()


async def test_starttls_required_but_not_offered_sends_nothing_in_plain_text(
    store: Store, cert: tuple[Path, Path]
) -> None:
    with SmtpServer("plain", cert) as srv:
        service = email_service(store, settings_for(srv.port), cert)
        await service.start()
        await service.notify("payment_failed", {"amount": Decimal("20"), "currency": "USD", "reason": "declined"},
                             ["email"], message_id="pay:1")
        await settled(service, "pay:1", "email")
        (row,) = await service.undelivered()
        assert row.status == "failed"
        assert row.reason == (f"The SMTP server {HOST}:{srv.port} does not offer STARTTLS, so nothing was sent "
                              "unencrypted: choose security \"tls\" (port 465) or another server in "
                              "Settings → Notifications.")
        assert srv.box.logins == [] and srv.box.messages == []  # no password, no message in the clear
        await service.stop()


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_both_auth_mechanisms_log_in(store: Store, cert: tuple[Path, Path], mechanism: str) -> None:
    with SmtpServer("starttls", cert, mechanisms=(mechanism,)) as srv:
        service = email_service(store, settings_for(srv.port), cert)
        await service.start()
        await service.notify("price_alert", {"symbol": "ETH/USDT", "price": Decimal("3000")}, ["email"],
                             message_id=f"auth:{mechanism}")
        row = await settled(service, f"auth:{mechanism}", "email")
        assert row.status == "delivered", row.last_error
        assert srv.box.mechanisms == [mechanism] and srv.box.logins == [(SMTP_USER, True)]


async def test_implicit_tls_on_its_own_port(store: Store, cert: tuple[Path, Path]) -> None:
    with SmtpServer("tls", cert) as srv:
        service = email_service(store, settings_for(srv.port, security="tls"), cert)
        await service.start()
        await service.notify("strategy_stopped", {"strategy": "grid", "reason": "three rejects"}, ["email"],
                             message_id="strat:1")
        assert await eventually(lambda: srv.box.parsed())
        assert srv.box.parsed()[0]["Subject"] == "Strategy stopped: grid"
        assert srv.box.logins == [(SMTP_USER, True)]
        await service.stop()


async def test_certificates_are_verified_by_default(store: Store, starttls_server: SmtpServer) -> None:
    secret = Secrets({"notify_smtp": SMTP_PASSWORD})
    sentence = await send_test_email(settings_for(starttls_server.port), secret, timeout=3.0)  # no CA file given
    assert sentence.startswith(f"The SMTP server {HOST}:{starttls_server.port} presented a certificate that could "
                               "not be verified")
    assert starttls_server.box.logins == []


async def test_the_settings_dialogs_test_button_says_what_happened(
    starttls_server: SmtpServer, cert: tuple[Path, Path]
) -> None:
    settings = settings_for(starttls_server.port)
    ok = await send_test_email(settings, Secrets({"notify_smtp": SMTP_PASSWORD}), ca_file=str(cert[0]), timeout=3.0)
    assert ok == f"A test email was sent to {RECIPIENT}. Check the inbox (and the spam folder)."
    assert starttls_server.box.parsed()[0]["Subject"] == "Meridian Terminal: test email"
    wrong = await send_test_email(settings, Secrets({"notify_smtp": WRONG_PASSWORD}), ca_file=str(cert[0]), timeout=3.0)
    assert wrong == ("The SMTP server refused the login: check the username and the password in "
                     "Settings → Notifications.")
    missing = await send_test_email(settings, Secrets({}), ca_file=str(cert[0]), timeout=3.0)
    assert missing == f"No SMTP password is stored for {SMTP_USER}: enter it in Settings → Notifications."
    off = await send_test_email(replace(settings, host=""), Secrets({}), timeout=3.0)
    assert off == "Email notifications are off: set the SMTP server in Settings → Notifications."
