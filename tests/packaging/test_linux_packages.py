"""The .deb and .tar.gz as a user gets them: unpacked, started, looked at.

Run with `make dist-test` (builds first) or `python -m pytest tests/packaging` after `make dist`.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packaging.conftest import RESULTS, VERSION, UserDirs, bundle_rules, linux_only, record

import measure_start  # noqa: E402  (installer/, which conftest put on sys.path)
from measure_start import painted_colours  # noqa: E402
from meridian_launch_check import LINUX_FONT_PACKAGE, LINUX_LIBRARIES  # noqa: E402

pytestmark = [linux_only, pytest.mark.timeout(300)]

APP = bundle_rules.APP_NAME
# libQt6*.so the bundle may hold: the app's modules, pyqtgraph's QtOpenGL(Widgets), and what the kept
# plugins link (DBus: platform theme/input; Svg: icons; XcbQpa, WaylandClient: the platform plugins).
ALLOWED_QT_LIBRARIES = {"Core", "Gui", "Widgets", "OpenGL", "OpenGLWidgets", "DBus", "Svg", "XcbQpa", "WaylandClient"}
MAX_BUNDLE_MB = 250
# The target is 2 s to the first painted window; this shared 2-core machine varies a lot, so the test
# fails only well past it and records the number for installer/README.md.
# It asserts on the CPU time the process used until then (what the start costs, whatever else runs).
MAX_START_CPU_S = float(os.environ.get("MERIDIAN_MAX_START_CPU_S", "4"))


def only_app_dirs_written(user: UserDirs) -> None:
    """The app writes to its config, data and log dirs only (platformdirs: ~/.config, ~/.local/share,
    ~/.local/state/<app>/log); a system library's cache (fontconfig, Mesa) may appear under ~/.cache."""
    allowed = (
        user.config.relative_to(user.home) / APP, user.data.relative_to(user.home) / APP,
        user.state.relative_to(user.home) / APP, user.cache.relative_to(user.home) / "fontconfig",
        user.cache.relative_to(user.home) / "mesa_shader_cache",
    )
    strays = [str(f) for f in user.files() if not any(f.is_relative_to(a) for a in allowed)]
    assert not strays, f"the packaged app wrote outside its config/data/log dirs: {strays}"


def tree_state(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.lstat().st_mtime for p in root.rglob("*")}


# --------------------------------------------------------------------------- the .deb's contents


def test_deb_declares_the_libraries_and_font_qt_needs(deb: Path) -> None:
    fields = {name: subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                                   check=True).stdout.strip() for name in ("Package", "Version", "Depends")}
    assert fields["Package"] == APP
    assert fields["Version"] == VERSION
    depends = {alt.split("(")[0].strip() for dep in fields["Depends"].split(",") for alt in dep.split("|")}
    for package in ("fonts-dejavu-core", "libxcb-cursor0", "libegl1", "libgl1", "libfontconfig1", "libxkbcommon0",
                    "libdbus-1-3", LINUX_FONT_PACKAGE, *(lib.package.split(" | ")[0] for lib in LINUX_LIBRARIES)):
        assert package in depends, f"{package} is not in the .deb's Depends"
    record("deb_mb", round(deb.stat().st_size / 1e6, 1))


def test_deb_installs_a_launcher_a_desktop_entry_and_icons(deb: Path, deb_root: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    owners = {line.split()[1] for line in listing.splitlines()}
    assert owners == {"root/root"}, f"files in the .deb must be root's, found {owners}"
    assert (deb_root / "opt" / APP / bundle_rules.EXE_NAME).stat().st_mode & 0o111

    desktop_file = deb_root / "usr/share/applications" / f"{APP}.desktop"
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(desktop_file)
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Name"] == bundle_rules.DISPLAY_NAME
    assert section["Exec"].split()[0] == bundle_rules.EXE_NAME  # resolved through PATH: /usr/bin/meridian
    assert (deb_root / "usr/bin" / bundle_rules.EXE_NAME).is_symlink()
    for size in ("48x48", "256x256"):
        assert (deb_root / f"usr/share/icons/hicolor/{size}/apps/{section['Icon']}.png").is_file()
    assert (deb_root / f"usr/share/icons/hicolor/scalable/apps/{section['Icon']}.svg").is_file()
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(desktop_file)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    assert (deb_root / f"usr/share/doc/{APP}/copyright").is_file()


def test_bundle_is_small_and_holds_no_build_machine_extras(deb_root: Path) -> None:
    bundle = deb_root / "opt" / APP
    files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()]
    rel = [p.relative_to(bundle).as_posix() for p in files]
    assert not bundle_rules.forbidden(rel)
    names = {Path(r).name for r in rel}
    system = [lib.soname for lib in LINUX_LIBRARIES if any(n == lib.soname or n.startswith(lib.soname + ".") for n in names)]
    assert not system, f"system libraries the .deb depends on were bundled too: {system}"
    qt = {n.removeprefix("libQt6").split(".so")[0] for n in names if n.startswith("libQt6")}
    assert qt <= ALLOWED_QT_LIBRARIES, f"unexpected Qt libraries: {sorted(qt - ALLOWED_QT_LIBRARIES)}"
    assert not any("/Qt/translations/" in r for r in rel)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    record("bundle_unpacked_mb", round(size_mb, 1))
    assert size_mb < MAX_BUNDLE_MB, f"the bundle is {size_mb:.0f} MB (budget {MAX_BUNDLE_MB} MB)"


# --------------------------------------------------------------------------- the installed app, running


def test_installed_app_passes_its_smoke_test_offscreen(launcher: Path, deb_root: Path, user: UserDirs) -> None:
    before = tree_state(deb_root)
    shot = RESULTS / "smoke-offscreen.png"
    shot.unlink(missing_ok=True)
    result = subprocess.run([str(launcher), "--smoke-test", "--smoke-seconds", "3", "--screenshot", str(shot)],
                            env=user.env(QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke test passed" in result.stdout
    fonts = int(result.stdout.rsplit("fonts:", 1)[1].split()[0])
    assert fonts > 0, "QFontDatabase.families() is empty in the packaged app"
    assert "Traceback" not in result.stderr, result.stderr
    assert painted_colours(shot.read_bytes()) > 50, f"{shot} looks blank"
    only_app_dirs_written(user)
    assert (user.state / APP / "log").is_dir(), "logs should go to the user log dir"
    assert tree_state(deb_root) == before, "the app wrote into its install folder"


def test_window_paints_under_xvfb_and_starts_fast(launcher: Path, user: UserDirs, xvfb: str) -> None:
    """A real X11 window through the xcb plugin and the system's xcb libraries, timed from outside by
    installer/measure_start.py: process start until a grab of the window shows it painted."""
    for tool in ("xdotool", "import"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (Debian/Ubuntu: apt-get install xdotool imagemagick)")
    shot = RESULTS / "smoke-xvfb.png"
    shot.unlink(missing_ok=True)
    start = measure_start.measure(launcher, user.env(DISPLAY=xvfb), ["--screenshot", str(shot)])
    assert start.exit_code == 0, start.output
    assert "smoke test passed" in start.output
    (RESULTS / "xvfb-first-paint.png").write_bytes(start.first_paint_png)
    assert painted_colours(shot.read_bytes()) > 50, f"{shot} looks blank"
    record("xvfb_first_visible_s", round(start.visible_s, 2))
    record("xvfb_first_painted_s", round(start.painted_s, 2))
    record("xvfb_first_painted_cpu_s", round(start.cpu_s, 2))
    record("load_average_1min", round(os.getloadavg()[0], 2))
    only_app_dirs_written(user)
    assert start.cpu_s < MAX_START_CPU_S, (
        f"the first painted window took {start.cpu_s:.1f} s of CPU ({start.painted_s:.1f} s wall)")


def test_frozen_app_has_keyring_backends_modules_and_resources(launcher: Path, user: UserDirs,
                                                                  secret_service: str) -> None:
    """MERIDIAN_BUNDLE_CHECK=1 makes the packaged app report what it can import and find (see
    installer/hooks/meridian_bundle_check.py); here with a real, unlocked Secret Service."""
    result = subprocess.run([str(launcher)], capture_output=True, text=True, timeout=120,
                            env=user.env(MERIDIAN_BUNDLE_CHECK="1", QT_QPA_PLATFORM="offscreen",
                                         DBUS_SESSION_BUS_ADDRESS=secret_service))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (RESULTS / "bundle-check.json").write_text(json.dumps(report, indent=1))
    assert report["frozen"]
    record("frozen_import_seconds", report["import_seconds"].get("value"))

    keyring = report["keyring"]
    assert keyring["ok"], keyring
    assert "keyring.backends.SecretService" in keyring["value"]["entry_points"]  # the metadata survived
    assert "keyring.backends.SecretService.Keyring" in keyring["value"]["viable_backends"]
    assert keyring["value"]["secure"] and keyring["value"]["status_name"] == "Secret Service", keyring

    failed = {name: r["error"] for name, r in report["imports"].items() if not r["ok"]}
    app_failures = {n: e for n, e in failed.items() if n.split(".")[0] in ("app", "ui")}
    assert not app_failures, f"app modules that do not import in the bundle: {app_failures}"
    for needed in ("ccxt.async_support", "ccxt.protobuf.mexc.PushDataV3ApiWrapper_pb2", "google.protobuf.message",
                   "keyring.backends.SecretService", "argon2.low_level", "cryptography.hazmat.primitives.ciphers.aead",
                   "websockets.asyncio.client", "aiohttp", "pyqtgraph", "qasync", "aiosmtplib", "desktop_notifier"):
        assert needed not in failed, f"{needed}: {failed[needed]}"
    assert report["desktop_notifier"]["ok"], report["desktop_notifier"]  # imported lazily by app/notify/desktop.py
    for exchange, outcome in report["exchanges"].items():
        assert outcome["ok"], f"ccxt {exchange}: {outcome}"

    qt = report["qt"]["value"]
    assert qt["font_families"] > 0
    assert qt["plugins_dir_in_bundle"]
    assert "libqxcb.so" in qt["platform_plugins"] and "libqwayland.so" in qt["platform_plugins"]

    paths = report["paths"]["value"]
    for key in ("config_file", "data_dir", "log_dir"):
        assert Path(paths[key]).is_relative_to(user.home), paths
    source_data = {f"{Path(dest) / Path(src).name}" for src, dest in bundle_rules.package_data()}
    assert source_data <= set(report["resources"]["value"]["package_data"]), "package data missing from the bundle"


def test_missing_system_library_is_a_sentence_naming_the_package(launcher: Path, user: UserDirs, xvfb: str) -> None:
    """Hide libxcb-cursor.so.0 in a private mount namespace (as on a machine without libxcb-cursor0):
    the launch check must name the package instead of Qt aborting."""
    library = Path("/usr/lib/x86_64-linux-gnu/libxcb-cursor.so.0")
    if not library.exists() or not shutil.which("unshare"):
        pytest.skip("needs libxcb-cursor0 installed and unshare (util-linux) to hide it")
    real = library.resolve()
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("this machine does not allow private mount namespaces (unshare -m)")
    script = f'mount --bind /dev/null "{real}" && exec "{launcher}" --smoke-test'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=user.env(DISPLAY=xvfb),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "libxcb-cursor0" in result.stderr and "apt-get install" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr
    record("missing_library_message", result.stderr.strip())


# --------------------------------------------------------------------------- the portable .tar.gz


def test_portable_tarball_runs_and_adds_a_menu_entry(portable_root: Path, user: UserDirs) -> None:
    for name in ("README.txt", "THIRD-PARTY-NOTICES.txt", f"share/{APP}.desktop", f"share/{APP}.png"):
        assert (portable_root / name).is_file(), name
    readme = (portable_root / "README.txt").read_text()
    assert "libxcb-cursor0" in readme and LINUX_FONT_PACKAGE in readme
    before = tree_state(portable_root)
    result = subprocess.run([str(portable_root / bundle_rules.EXE_NAME), "--smoke-test", "--smoke-seconds", "2"],
                            env=user.env(QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree_state(portable_root) == before, "the portable app wrote into its own folder"
    only_app_dirs_written(user)

    subprocess.run([str(portable_root / "install-desktop-entry.sh")], env=user.env(), check=True,
                   capture_output=True, timeout=30)
    entry = (user.data / "applications" / f"{APP}.desktop").read_text()
    assert f'Exec="{portable_root}/{bundle_rules.EXE_NAME}"' in entry
    assert (user.data / "icons/hicolor/256x256/apps" / f"{APP}.png").is_file()
