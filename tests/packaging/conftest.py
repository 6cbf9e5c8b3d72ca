"""Fixtures for testing the built installers (`make dist-test`; needs `make dist` first).

These tests are slow and need the build's output, so they live outside pytest's testpaths and
`make test` never runs them. Results (timings, screenshots) go to build/packaging-test/ for
installer/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
RESULTS = ROOT / "build" / "packaging-test"
sys.path.insert(0, str(ROOT / "installer"))
sys.path.insert(0, str(ROOT / "installer" / "hooks"))

import bundle_rules  # noqa: E402

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the .deb and .tar.gz are Linux builds")


def artefact(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if not found:
        pytest.fail(f"No {pattern} in {DIST}: run `make dist` (python installer/build.py) before these tests.")
    return found[-1]


def record(key: str, value: object) -> None:
    """Keep a measurement for installer/README.md (build/packaging-test/results.json)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "results.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


@pytest.fixture(scope="session")
def deb() -> Path:
    return artefact(f"{bundle_rules.APP_NAME}_{VERSION}_*.deb")


@pytest.fixture(scope="session")
def tarball() -> Path:
    return artefact(f"{bundle_rules.APP_NAME}-{VERSION}-linux-*.tar.gz")


@pytest.fixture(scope="session")
def deb_root(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb unpacked as dpkg would install it, under a temporary root."""
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


@pytest.fixture(scope="session")
def launcher(deb_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/usr/bin/meridian as installed: a symlink to /opt/meridian-terminal/meridian. Re-pointed into the
    temporary root, so starting through it also proves the bootloader finds _internal/ via a symlink."""
    link = deb_root / "usr" / "bin" / bundle_rules.EXE_NAME
    target = os.readlink(link)
    assert target == f"/opt/{bundle_rules.APP_NAME}/{bundle_rules.EXE_NAME}"
    shim = tmp_path_factory.mktemp("bin") / bundle_rules.EXE_NAME
    shim.symlink_to(deb_root / target.lstrip("/"))
    return shim


class UserDirs:
    """A throwaway home: HOME and every XDG base directory point inside `home`."""

    def __init__(self, base: Path) -> None:
        self.home = base / "home"
        self.config = self.home / ".config"
        self.data = self.home / ".local" / "share"
        self.state = self.home / ".local" / "state"
        self.cache = self.home / ".cache"
        self.runtime = base / "run"
        for d in (self.config, self.data, self.state, self.cache):
            d.mkdir(parents=True)
        self.runtime.mkdir(mode=0o700)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(self.config), "XDG_DATA_HOME": str(self.data), "XDG_STATE_HOME": str(self.state),
            "XDG_CACHE_HOME": str(self.cache), "XDG_RUNTIME_DIR": str(self.runtime),
        }
        env.update(extra)
        return env

    def files(self) -> list[Path]:
        return sorted(p.relative_to(self.home) for p in self.home.rglob("*") if p.is_file())


@pytest.fixture
def user(tmp_path: Path) -> UserDirs:
    return UserDirs(tmp_path)


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """A private X server; yields its DISPLAY. -displayfd picks a free display number."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (Debian/Ubuntu: apt-get install xvfb)")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.fail("Xvfb did not report a display number")
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={dir}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow own="*"/></policy></busconfig>
"""


@pytest.fixture
def secret_service(user: UserDirs) -> Iterator[str]:
    """gnome-keyring-daemon with an unlocked login keyring on a private session bus; yields its address.
    Same recipe as tests/integration/test_secret_service.py, kept separate so these tests stand alone."""
    missing = [tool for tool in ("dbus-daemon", "dbus-send", "gnome-keyring-daemon") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian/Ubuntu: apt-get install dbus-daemon gnome-keyring)")
    bus_dir = Path(tempfile.mkdtemp(prefix="mt-pkg-bus-"))  # short: unix socket paths have a length limit
    config = bus_dir / "bus.conf"
    config.write_text(BUS_CONFIG.format(dir=bus_dir))
    env = user.env()
    processes: list[subprocess.Popen] = []
    try:
        bus = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        processes.append(bus)
        address = bus.stdout.readline().strip() if bus.stdout else ""
        assert address, "dbus-daemon did not print its address"
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        daemon = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        processes.append(daemon)
        assert daemon.stdin is not None
        daemon.stdin.write(b"throwaway-login-password")
        daemon.stdin.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the Secret Service name appears on the bus when it is ready
            names = subprocess.run(["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                                    "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"],
                                   env=env, capture_output=True, text=True, check=False).stdout
            if "org.freedesktop.secrets" in names:
                break
            time.sleep(0.1)
        else:
            pytest.fail("gnome-keyring-daemon did not register org.freedesktop.secrets within 15 s")
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
            if process.stdout:
                process.stdout.close()
        shutil.rmtree(bus_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def portable_root(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("portable")
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="tar")
    return root / f"{bundle_rules.APP_NAME}-{VERSION}"
