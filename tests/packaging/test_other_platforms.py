"""What can be checked here of the Windows and macOS installers, and the installer tooling itself.

The Windows installer script compiles with Linux's makensis against a dummy bundle (same NSIS 3 as on
Windows); the macOS files are parsed. The real builds run on the release workflow's Windows and macOS
runners (.github/workflows/release.yml).
"""

from __future__ import annotations

import importlib.util
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT, VERSION, bundle_rules

import meridian_launch_check as launch_check  # noqa: E402  (conftest put installer/hooks on sys.path)


def load_build_module():
    """installer/build.py, loaded under a name that cannot clash with PyPI's `build` package."""
    spec = importlib.util.spec_from_file_location("meridian_installer_build", ROOT / "installer" / "build.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(180)
def test_windows_installer_script_compiles_with_makensis(tmp_path: Path) -> None:
    makensis = shutil.which("makensis")
    if not makensis:
        pytest.skip("makensis is not installed (Debian/Ubuntu: apt-get install nsis)")
    build = load_build_module()
    if not (build.ICONS / "meridian.ico").is_file():
        pytest.fail("build/icons/meridian.ico is missing: run `make dist` first (it renders the icons).")
    bundle = tmp_path / "meridian-terminal"
    (bundle / "_internal").mkdir(parents=True)
    (bundle / "meridian.exe").write_bytes(b"MZ" + b"\0" * 62)  # stand-ins: NSIS only packs them
    (bundle / "_internal" / "python312.dll").write_bytes(b"MZ")
    (bundle / "THIRD-PARTY-NOTICES.txt").write_text("notices\n")
    out = build.nsis_installer(bundle, VERSION, tmp_path / f"Meridian-Terminal-{VERSION}-setup.exe", makensis)
    assert out.read_bytes()[:2] == b"MZ"
    script = (ROOT / "installer/windows/meridian.nsi").read_text()
    for must in ("RequestExecutionLevel user", "$LOCALAPPDATA\\Programs", "$SMPROGRAMS", "$DESKTOP",
                 "WriteUninstaller", "HKCU"):
        assert must in script, must


def test_macos_entitlements_and_spec_are_well_formed() -> None:
    entitlements = plistlib.loads((ROOT / "installer/macos/entitlements.plist").read_bytes())
    assert entitlements == {"com.apple.security.cs.allow-unsigned-executable-memory": True}
    spec = (ROOT / "installer/meridian.spec").read_text()
    compile(spec, "meridian.spec", "exec")  # at least valid Python on every platform
    assert "BUNDLE(" in spec and "bundle_identifier" in spec


def test_release_workflow_builds_all_three_on_a_tag() -> None:
    workflow = (ROOT / ".github/workflows/release.yml").read_text()
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        yaml = None
    if yaml is not None:
        parsed = yaml.safe_load(workflow)
        assert "tags" in parsed[True]["push"]  # YAML 1.1 reads the key `on` as True
    for must in ("ubuntu-", "windows-", "macos-", "installer/build.py", "make dist-test", "upload-artifact",
                 "tags:"):
        assert must in workflow, must


# --------------------------------------------------------------------------- the rules, without a build


def test_qt_modules_come_from_the_source(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "ui").mkdir()
    (tmp_path / "main.py").write_text("import PySide6.QtSvg\n")
    (tmp_path / "ui" / "x.py").write_text("from PySide6 import (QtNetwork,\n QtCore)\nfrom PySide6.QtSql import X\n")
    used = bundle_rules.qt_modules_used(tmp_path)
    assert used == bundle_rules.QT_BASE_MODULES | {"QtSvg", "QtNetwork", "QtSql"}


def test_every_app_module_is_collected() -> None:
    modules = bundle_rules.source_modules()
    assert "app.venues.binance" in modules and "ui.app" in modules  # imported by name at run time / lazily
    assert not any(m.endswith("__init__") for m in modules)


def test_launch_check_names_the_packages() -> None:
    missing = [lib for lib in launch_check.LINUX_LIBRARIES if lib.soname in ("libxcb-cursor.so.0", "libEGL.so.1")]
    text = launch_check.message_for(missing)
    assert "libxcb-cursor0" in text and "libegl1" in text and "apt-get install" in text


def test_launch_check_follows_qts_platform_choice() -> None:
    assert launch_check.platforms_in_use({"QT_QPA_PLATFORM": "offscreen"}) == {"core", "gui"}
    assert launch_check.platforms_in_use({}) == {"core", "gui", "xcb"}
    assert launch_check.platforms_in_use({"WAYLAND_DISPLAY": "wayland-0"}) == {"core", "gui", "xcb", "wayland"}
    assert launch_check.check_linux(["meridian", "watch", "BTC/USDT"], {}, Path("/nonexistent")) is None


def test_forbidden_files_are_caught() -> None:
    assert bundle_rules.forbidden(["_internal/libgtk-3.so.0", "_internal/PySide6/Qt/lib/libQt6Quick.so.6"])
    assert not bundle_rules.forbidden(["_internal/PySide6/Qt/lib/libQt6Widgets.so.6"])


@pytest.mark.skipif(sys.platform != "linux", reason="builds the .deb's Depends from dpkg's architecture")
def test_deb_depends_lists_every_library_once() -> None:
    sys.path.insert(0, str(ROOT / "installer" / "linux"))
    import linux_package

    depends = linux_package.depends().split(", ")
    assert len(depends) == len(set(depends))
    assert depends[0].startswith("libc6 (>= ")
    if shutil.which("dpkg"):
        subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True)
