"""KeyringSecretStore against a real Secret Service: gnome-keyring-daemon on a private D-Bus session bus.

Each test starts its own dbus-daemon (a minimal config: no service activation,
so nothing else on the machine is started or touched) and a gnome-keyring-daemon
whose login keyring is created and unlocked with a throwaway password, all
under a temporary HOME and XDG_RUNTIME_DIR. The processes are stopped and the
directory removed afterwards. Needs the Debian packages `dbus-daemon` and
`gnome-keyring`; without them the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import keyring
import pytest

from app.secrets import (
    ApiCredentials,
    KeyringAccessError,
    KeyringSecretStore,
    StoreKind,
    backend_status,
    open_secret_store,
)

MARKER = "ZZLEAKMARKER93"
DAEMONS = ("dbus-daemon", "gnome-keyring-daemon")
_missing = [name for name in DAEMONS if shutil.which(name) is None]

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Secret Service is the Linux keyring"),
    pytest.mark.skipif(
        bool(_missing),
        reason=f"needs {' and '.join(_missing)} for a real Secret Service "
        "(Debian/Ubuntu: apt-get install dbus-daemon gnome-keyring)",
    ),
]

secretstorage = pytest.importorskip("secretstorage")
from keyring.backends import SecretService  # noqa: E402  (after the skip: it needs secretstorage)

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def creds(n: int = 1) -> ApiCredentials:
    return ApiCredentials(f"AK{n:02d}abcdefgh{MARKER}ijklmnop", f"SK{n:02d}-{MARKER}-secret", f"PP{n:02d}{MARKER}")


def same(a: ApiCredentials | None, b: ApiCredentials | None) -> bool:
    return bool(a == b)  # never let pytest diff the fields of credentials


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def wait_for_unlocked_default_collection(deadline: float) -> str | None:
    """None once the login keyring is the unlocked default collection, else the last problem seen."""
    problem = "the Secret Service did not appear on the bus"
    while time.monotonic() < deadline:
        try:
            with closing(secretstorage.dbus_init()) as bus:
                if secretstorage.check_service_availability(bus):
                    if not secretstorage.get_default_collection(bus).is_locked():
                        return None
                    problem = "the default collection stayed locked"
        except secretstorage.exceptions.SecretStorageException as exc:
            problem = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    return problem


@pytest.fixture
def secret_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A running, unlocked gnome-keyring on a private session bus; yields the bus address."""
    # mkdtemp under /tmp: unix socket paths must stay short (tmp_path can be too long).
    root = Path(tempfile.mkdtemp(prefix="mt-ss-"))
    processes: list[subprocess.Popen] = []
    try:
        for sub in ("home", "run", "bus"):
            (root / sub).mkdir(mode=0o700)
        config = root / "bus.conf"
        config.write_text(BUS_CONFIG.format(dir=root / "bus"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "XDG_", "GNOME_KEYRING"))}
        env.update(
            HOME=str(root / "home"),
            XDG_RUNTIME_DIR=str(root / "run"),
            XDG_DATA_HOME=str(root / "home/.local/share"),
            XDG_CONFIG_HOME=str(root / "home/.config"),
            XDG_CACHE_HOME=str(root / "home/.cache"),
        )
        bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # as root it warns that it cannot raise its fd limit
            env=env,
            text=True,
        )
        processes.append(bus)
        address = bus.stdout.readline().strip() if bus.stdout else ""
        if not address:
            pytest.fail("dbus-daemon did not print its address")
        env["DBUS_SESSION_BUS_ADDRESS"] = address

        # --unlock reads the login keyring's password from stdin (and creates the keyring).
        keyring_daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        processes.append(keyring_daemon)
        assert keyring_daemon.stdin is not None
        keyring_daemon.stdin.write(b"throwaway-login-password")
        keyring_daemon.stdin.close()

        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)  # read by secretstorage at each connect
        problem = wait_for_unlocked_default_collection(time.monotonic() + 15)
        if problem is not None:
            stop(keyring_daemon)
            errors = keyring_daemon.stderr.read().decode(errors="replace")[-1500:] if keyring_daemon.stderr else ""
            pytest.fail(f"gnome-keyring-daemon did not come up: {problem}\n{errors}")
        yield address
    finally:
        for process in reversed(processes):
            stop(process)
            for stream in (process.stdout, process.stderr):
                if stream:
                    stream.close()
        shutil.rmtree(root, ignore_errors=True)


def items(service: str) -> list:
    with closing(secretstorage.dbus_init()) as bus:
        found = secretstorage.get_default_collection(bus).search_items({"service": service})
        return [(item.get_label(), item.get_attributes(), item.get_secret()) for item in found]


def test_secret_service_counts_as_a_secure_keyring(secret_service: str) -> None:
    status = backend_status(SecretService.Keyring())
    assert status.secure
    assert status.name == "Secret Service"
    assert status.backend == "keyring.backends.SecretService.Keyring"


async def test_round_trip_through_the_real_secret_service(secret_service: str) -> None:
    store = KeyringSecretStore("meridian-terminal-test", backend=SecretService.Keyring())
    assert await store.venues_with_keys() == []
    await store.set("binance", creds(1))
    await store.set("okx", creds(2))

    # A new store (a new session of the terminal) reads the same keyring.
    reopened = KeyringSecretStore("meridian-terminal-test", backend=SecretService.Keyring())
    assert same(await reopened.get("binance"), creds(1))
    assert same(await reopened.get("okx"), creds(2))
    assert await reopened.venues_with_keys() == ["binance", "okx"]

    await reopened.set("binance", creds(3))
    assert same(await store.get("binance"), creds(3))
    await reopened.delete("okx")
    assert await store.get("okx") is None
    assert await store.venues_with_keys() == ["binance"]


async def test_the_secret_is_in_the_item_and_nowhere_else(secret_service: str) -> None:
    store = KeyringSecretStore("meridian-terminal-test", backend=SecretService.Keyring())
    await store.set("binance", creds(1))

    [(label, attributes, secret)] = items("meridian-terminal-test/binance")
    # Labels and attributes are stored unencrypted by Secret Service providers: no secret there.
    assert MARKER not in label and MARKER not in json.dumps(attributes)
    assert attributes["username"] == "api-credentials"
    stored = json.loads(secret)
    assert stored["v"] == 1
    assert same(ApiCredentials(stored["api_key"], stored["secret"], stored["passphrase"]), creds(1))

    [(_, _, index)] = items("meridian-terminal-test")
    assert json.loads(index) == {"v": 1, "venues": ["binance"]}

    await store.delete("binance")
    assert items("meridian-terminal-test/binance") == []


async def test_the_factory_uses_keyrings_configured_backend(
    secret_service: str, tmp_path: Path
) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(SecretService.Keyring())
    try:
        assert backend_status().secure
        store = await open_secret_store(tmp_path, StoreKind.KEYRING, service="meridian-terminal-test")
        await store.set("gate", creds(4))
        assert same(await store.get("gate"), creds(4))
        await store.delete("gate")
    finally:
        keyring.set_keyring(previous)
    assert list(tmp_path.iterdir()) == []  # the keyring store writes no file of its own


async def test_a_locked_keyring_is_a_clear_error(secret_service: str) -> None:
    store = KeyringSecretStore("meridian-terminal-test", backend=SecretService.Keyring())
    await store.set("binance", creds(1))
    with closing(secretstorage.dbus_init()) as bus:
        secretstorage.get_default_collection(bus).lock()
    # There is no prompter on this private bus, so the unlock prompt fails at once.
    with pytest.raises(KeyringAccessError, match="is locked") as info:
        await store.get("binance")
    assert MARKER not in str(info.value) and MARKER not in repr(info.value)
