"""`python main.py relay` as a real process: it serves /healthz, stops on SIGTERM, and refuses to start unconfigured."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from app.billing.cli import run_relay
from tests.servers.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")}
    env.update(extra)
    return env


async def test_the_relay_process_answers_healthz_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "relay.sqlite3"
    async with FakeStripe() as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), "--data-dir", str(tmp_path / "data"), "relay",
            "--host", "127.0.0.1", "--port", str(port), "--db", str(db), "--stripe-api-base", fake.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            cwd=ROOT, env=clean_env(STRIPE_SECRET_KEY=API_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET),
        )
        try:
            status = None
            async with aiohttp.ClientSession() as http:
                for _ in range(300):  # the interpreter and its imports take a few seconds on a busy machine
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            status = resp.status
                            body = await resp.json()
                            break
                    except aiohttp.ClientConnectionError:
                        assert process.returncode is None, (await process.stderr.read()).decode()
                        await asyncio.sleep(0.1)
            assert status == 200 and body == {"status": "ok"}
            for _ in range(50):  # its start-up reconciliation asked the (fake) Stripe for recent events
                if any(r.path == "/v1/events" for r in fake.requests):
                    break
                await asyncio.sleep(0.1)
            assert [r.status for r in fake.requests if r.path == "/v1/events"][:1] == [200]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert db.exists()
    text = out.decode() + err.decode()
    assert f"Billing relay listening on http://127.0.0.1:{port}" in text
    assert API_KEY not in text and WEBHOOK_SECRET not in text


async def test_the_relay_process_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), "--data-dir", str(tmp_path / "data"), "relay",
        "--port", str(free_port()), "--db", str(tmp_path / "relay.sqlite3"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        cwd=ROOT, env=clean_env(),
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert err.decode().strip() == (
        "The billing relay needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET in its environment, and "
        "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET are not set. Export them in the shell or service that starts "
        "the relay (never put them in a file you commit), then start it again."
    )
    assert not (tmp_path / "relay.sqlite3").exists()


@pytest.mark.parametrize("present", ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"])
def test_run_relay_names_the_missing_secret_and_never_prints_the_other(
    present: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    value = API_KEY if present == "STRIPE_SECRET_KEY" else WEBHOOK_SECRET
    monkeypatch.setenv(present, value)
    code = run_relay(host="127.0.0.1", port=0, db=tmp_path / "relay.sqlite3", stripe_api_base=None)
    printed = capsys.readouterr()
    missing = "STRIPE_WEBHOOK_SECRET" if present == "STRIPE_SECRET_KEY" else "STRIPE_SECRET_KEY"
    assert code == 2 and f"{missing} is not set" in printed.err
    assert value not in printed.err + printed.out


def test_run_relay_refuses_a_stripe_api_base_that_is_not_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    code = run_relay(host="127.0.0.1", port=0, db=tmp_path / "relay.sqlite3", stripe_api_base="localhost:12111")
    assert code == 2 and "--stripe-api-base must be an http:// or https:// address" in capsys.readouterr().err
