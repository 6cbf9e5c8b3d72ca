"""Builds Meridian Terminal's installers for the machine this runs on.

    python installer/build.py              # or: make dist
    python installer/build.py --fresh      # recreate the build venv first

1. a clean virtual environment (build/venv) with only the app's dependencies and PyInstaller, so nothing
   else installed on the build machine can end up in the bundle;
2. the icons, rendered from ui/meridian.svg (the window's own icon);
3. the one-folder PyInstaller bundle (installer/meridian.spec) in build/bundle;
4. an audit of what went in (build/bundle-report.txt): size, system libraries, files that must not be there;
5. the platform's installer in dist/: Linux a .deb and a .tar.gz, Windows an NSIS setup .exe,
   macOS a .dmg holding the .app.

Needs only the standard library to start (it runs before the build venv exists). Every failure is one
sentence saying what to install or fix; see installer/README.md.
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 12):  # before anything newer Pythons lack (tomllib) can fail with a traceback
    sys.exit("The build needs Python 3.12 or newer (the app does); run it with python3.12.")

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "installer"
BUILD = ROOT / "build"
DIST = ROOT / "dist"
VENV = BUILD / "venv"
BUNDLE_PARENT = BUILD / "bundle"
ICONS = BUILD / "icons"
MAX_BUNDLE_MB = 250

sys.path.insert(0, str(INSTALLER))
import bundle_rules  # noqa: E402


class BuildError(Exception):
    """A build step failed; the message is the sentence to print."""


def log(text: str) -> None:
    print(f"[build] {text}", flush=True)


def run(cmd: Sequence[str | Path], *, env: dict[str, str] | None = None, what: str) -> None:
    """Run a tool; on failure raise a sentence naming the step (its own output is already on screen)."""
    args = [str(c) for c in cmd]
    try:
        completed = subprocess.run(args, env=env, cwd=ROOT, check=False)
    except FileNotFoundError as exc:
        raise BuildError(f"{what} failed: {args[0]} is not installed ({exc}).") from exc
    if completed.returncode != 0:
        raise BuildError(f"{what} failed (exit code {completed.returncode}); its output is above.")


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def check_version(version: str) -> None:
    """pyproject's version is the one the installers carry; app/__init__.py must agree."""
    text = (ROOT / "app" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.MULTILINE)
    if found and found.group(1) != version:
        raise BuildError(f"pyproject.toml says version {version} but app/__init__.py says {found.group(1)}; "
                         "make them the same before building.")


# --------------------------------------------------------------------------- 1. the clean venv


def requirements(meta: dict) -> list[str]:
    """The app's dependencies and the `dist` extra (PyInstaller); not the test tools, not the app itself
    (PyInstaller reads the app from the source tree)."""
    return list(meta["dependencies"]) + list(meta.get("optional-dependencies", {}).get("dist", []))


def ensure_venv(reqs: list[str], fresh: bool) -> None:
    stamp = VENV / ".meridian-build-requirements"
    wanted = json.dumps({"python": sys.version, "requirements": reqs}, indent=1)
    if not fresh and stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        log(f"Reusing the build venv {VENV} (same Python and requirements; --fresh recreates it).")
        return
    if VENV.exists():
        log(f"Recreating the build venv {VENV}: its requirements changed or --fresh was given.")
        shutil.rmtree(VENV)
    log(f"Creating a clean build venv in {VENV} with {sys.executable}.")
    try:
        import ensurepip  # noqa: F401  (Debian splits it, with venv, into python3.x-venv)
        import venv  # noqa: F401
    except ImportError as exc:
        raise BuildError("This Python cannot make virtual environments; install its venv support (Debian/Ubuntu: "
                         "apt-get install python3.12-venv) or run the build with another Python 3.12.") from exc
    run([sys.executable, "-m", "venv", VENV], what="Creating the build venv")
    run([venv_python(), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], what="Upgrading pip in the build venv")
    run([venv_python(), "-m", "pip", "install", "--quiet", *reqs],
        what="Installing the app's dependencies into the build venv (needs PyPI)")
    stamp.write_text(wanted, encoding="utf-8")


# --------------------------------------------------------------------------- 3. PyInstaller


def windows_version_file(version: str) -> Path:
    """PyInstaller's VSVersionInfo: Explorer's Details tab and the SmartScreen prompt show these."""
    numbers = ", ".join((version.split("+")[0].split("-")[0].split(".") + ["0"] * 4)[:4])
    text = f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers=({numbers}), prodvers=({numbers})),
  kids=[StringFileInfo([StringTable('040904B0', [
    StringStruct('CompanyName', 'Meridian'),
    StringStruct('FileDescription', '{bundle_rules.DISPLAY_NAME}'),
    StringStruct('FileVersion', '{version}'),
    StringStruct('ProductName', '{bundle_rules.DISPLAY_NAME}'),
    StringStruct('ProductVersion', '{version}'),
    StringStruct('OriginalFilename', '{bundle_rules.EXE_NAME}.exe')])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])])
"""
    path = BUILD / "windows-version.txt"
    path.write_text(text, encoding="utf-8")
    return path


def pyinstaller(version: str) -> Path:
    env = dict(os.environ, MERIDIAN_VERSION=version, MERIDIAN_ICON_DIR=str(ICONS), QT_QPA_PLATFORM="offscreen")
    if sys.platform == "win32":
        env["MERIDIAN_WIN_VERSION_FILE"] = str(windows_version_file(version))
    # --clean always: the spec changes what Analysis collects in ways its cache does not notice
    # (the Linux exclude list), and a stale cache would ship the previous build's libraries.
    cmd = [venv_python(), "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", BUNDLE_PARENT, "--workpath", BUILD / "pyinstaller", INSTALLER / "meridian.spec"]
    run(cmd, env=env, what="PyInstaller")
    return BUNDLE_PARENT / bundle_rules.APP_NAME


NOTICES_SCRIPT = """
import json, sys
from importlib import metadata
rows = []
for dist in metadata.distributions():
    meta = dist.metadata
    licence = meta.get("License-Expression") or meta.get("License") or ""
    if not licence or len(licence) > 80:  # some put the whole licence text here
        licence = "; ".join(c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::"))
    rows.append((meta["Name"], dist.version, licence or "see the project's page", meta.get("Home-page") or ""))
json.dump(sorted(rows, key=lambda r: r[0].lower()), sys.stdout)
"""


def third_party_notices(bundle: Path, version: str) -> None:
    """THIRD-PARTY-NOTICES.txt in the bundle (the .deb's copyright file): what it redistributes, under which
    licences, as the build venv's package metadata says. Qt is LGPL-3.0: the libraries stay separate,
    replaceable files in _internal/PySide6/Qt/lib, which the LGPL asks for."""
    out = subprocess.run([str(venv_python()), "-c", NOTICES_SCRIPT], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BuildError(f"Listing the bundled packages' licences failed: {out.stderr.strip()[-500:]}")
    rows = json.loads(out.stdout)
    lines = [f"{bundle_rules.DISPLAY_NAME} {version}", "",
             "This bundle contains the following components and their licences:", "",
             f"  Python {platform.python_version()}: PSF-2.0",
             "  PyInstaller bootloader: GPL-2.0-or-later with the bootloader exception", ""]
    lines += [f"  {name} {ver}: {licence}" + (f" ({home})" if home else "") for name, ver, licence, home in rows
              if name.lower() not in ("pip", "setuptools", "pyinstaller", "pyinstaller-hooks-contrib", "altgraph")]
    (bundle / "THIRD-PARTY-NOTICES.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- 4. the audit


def audit(bundle: Path, max_mb: float) -> dict:
    """What went in: the numbers for installer/README.md, and a failure for anything that must not."""
    files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()]
    total = sum(p.stat().st_size for p in files)
    rel = {p: p.relative_to(bundle).as_posix() for p in files}
    internal = bundle / "_internal"
    groups: dict[str, int] = {}
    for p in files:
        parts = rel[p].split("/")
        key = "/".join(parts[:3]) if parts[:2] == ["_internal", "PySide6"] else "/".join(parts[:2])
        groups[key] = groups.get(key, 0) + p.stat().st_size
    # Real files at the top of _internal that are neither Python extensions nor links into a package came
    # from the build machine's system (or Python's own build): the ones to watch.
    system_libs = sorted(p.name for p in internal.glob("*") if p.is_file() and not p.is_symlink()
                         and (".so" in p.name or p.suffix in (".dll", ".dylib")) and ".cpython-" not in p.name
                         and not p.name.endswith(".pyd"))
    report = {
        "bundle": str(bundle),
        "total_mb": round(total / 1e6, 1),
        "files": len(files),
        "largest_groups_mb": {k: round(v / 1e6, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])[:25]},
        "system_libraries": system_libs,
        "qt_libraries": sorted(p.name for p in internal.rglob("libQt6*") if p.is_file())
        + sorted(p.name for p in internal.rglob("Qt6*.dll")),
        "qt_plugins": sorted(rel[p].split("/plugins/", 1)[1] for p in files if "/plugins/" in rel[p]),
    }
    (BUILD / "bundle-report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    lines = [f"Bundle {bundle}: {report['total_mb']} MB in {len(files)} files.", "", "Largest parts (MB):"]
    lines += [f"  {v:8.1f}  {k}" for k, v in report["largest_groups_mb"].items()]
    lines += ["", "Libraries taken from the build machine's system:"] + [f"  {n}" for n in system_libs]
    lines += ["", "Qt libraries:"] + [f"  {n}" for n in report["qt_libraries"]]
    lines += ["", "Qt plugins:"] + [f"  {n}" for n in report["qt_plugins"]]
    (BUILD / "bundle-report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"Bundle: {report['total_mb']} MB unpacked, {len(files)} files; details in {BUILD / 'bundle-report.txt'}.")

    problems = bundle_rules.forbidden(rel.values())
    if problems:
        raise BuildError("The bundle holds files it must not:\n  " + "\n  ".join(problems[:20])
                         + "\nSee EXCLUDED_QT_PLUGINS / EXCLUDED_MODULES in installer/bundle_rules.py.")
    if total / 1e6 > max_mb:
        raise BuildError(f"The bundle is {total / 1e6:.0f} MB, over the {max_mb:.0f} MB budget; "
                         f"see {BUILD / 'bundle-report.txt'} for what is big.")
    return report


# --------------------------------------------------------------------------- 5. installers


def find_makensis() -> str:
    found = shutil.which("makensis")
    if found:
        return found
    for base in (os.environ.get("ProgramFiles(x86)"), os.environ.get("ProgramFiles")):
        if base and (Path(base) / "NSIS" / "makensis.exe").is_file():
            return str(Path(base) / "NSIS" / "makensis.exe")
    raise BuildError("makensis (NSIS) is not installed: install it (Windows: choco install nsis, or "
                     "https://nsis.sourceforge.io; Debian/Ubuntu: apt-get install nsis) and build again.")


def nsis_installer(bundle: Path, version: str, out: Path, makensis: str | None = None) -> Path:
    """Also used by tests/packaging on Linux to compile the script against a dummy bundle."""
    out.parent.mkdir(parents=True, exist_ok=True)
    run([makensis or find_makensis(), "-V2", "-WX", "-INPUTCHARSET", "UTF8",
         f"-DVERSION={version}", f"-DBUNDLE_DIR={bundle}", f"-DICON={ICONS / 'meridian.ico'}", f"-DOUTFILE={out}",
         INSTALLER / "windows" / "meridian.nsi"], what="NSIS (makensis)")
    return out


def windows(bundle: Path, version: str) -> list[Path]:
    return [nsis_installer(bundle, version, DIST / f"Meridian-Terminal-{version}-setup.exe")]


def macos(version: str) -> list[Path]:
    if not shutil.which("hdiutil"):
        raise BuildError("hdiutil was not found; the .dmg can only be made on macOS.")
    app = BUNDLE_PARENT / f"{bundle_rules.DISPLAY_NAME}.app"
    stage = BUILD / "dmg"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copytree(app, stage / app.name, symlinks=True)
    (stage / "Applications").symlink_to("/Applications")  # drag-to-install
    dmg = DIST / f"Meridian-Terminal-{version}.dmg"
    dmg.unlink(missing_ok=True)
    run(["hdiutil", "create", "-volname", bundle_rules.DISPLAY_NAME, "-srcfolder", stage, "-ov",
         "-format", "UDZO", dmg], what="hdiutil (making the .dmg)")
    identity = os.environ.get("MACOS_SIGN_IDENTITY")
    if identity:  # see installer/README.md: signing and notarising
        run(["codesign", "--force", "--sign", identity, "--timestamp", dmg], what="codesign (the .dmg)")
        profile = os.environ.get("MACOS_NOTARY_PROFILE")
        if profile:
            run(["xcrun", "notarytool", "submit", dmg, "--keychain-profile", profile, "--wait"], what="Notarisation")
            run(["xcrun", "stapler", "staple", dmg], what="Stapling the notarisation ticket")
    return [dmg]


def linux(bundle: Path, version: str) -> list[Path]:
    sys.path.insert(0, str(INSTALLER / "linux"))
    import linux_package  # installer/linux/linux_package.py

    try:
        return [linux_package.make_deb(bundle, version, ICONS, DIST),
                linux_package.make_tarball(bundle, version, ICONS, DIST)]
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"{exc.cmd[0]} failed (exit code {exc.returncode}) while making the Linux packages.") from exc


# --------------------------------------------------------------------------- main


def preflight(bundle_only: bool) -> None:
    """Fail in the first second, not after minutes of PyInstaller, when a tool is missing."""
    needed: dict[str, str] = {}
    if sys.platform.startswith("linux"):
        needed = {"objdump": "binutils", "strip": "binutils"}  # PyInstaller's library scan, the spec's strip
        if not bundle_only:
            needed |= {"dpkg-deb": "dpkg", "dpkg": "dpkg"}
    elif sys.platform == "darwin" and not bundle_only:
        needed = {"hdiutil": "Xcode's command line tools (xcode-select --install)"}
    missing = [f"{tool} (install {package})" for tool, package in needed.items() if not shutil.which(tool)]
    if missing:
        raise BuildError("Missing build tools: " + "; ".join(missing) + ".")
    if sys.platform == "win32" and not bundle_only:
        find_makensis()



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Meridian Terminal's installers for this machine.")
    parser.add_argument("--fresh", action="store_true", help="recreate the build venv")
    parser.add_argument("--bundle-only", action="store_true", help="stop after the PyInstaller bundle and its audit")
    parser.add_argument("--max-mb", type=float, default=MAX_BUNDLE_MB, help="fail when the bundle is bigger")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        preflight(args.bundle_only)
        meta = project()
        version = meta["version"]
        check_version(version)
        log(f"Building {bundle_rules.DISPLAY_NAME} {version} for {platform.system()} {platform.machine()}.")
        step = time.monotonic()
        ensure_venv(requirements(meta), args.fresh)
        log(f"Build venv ready in {time.monotonic() - step:.0f} s.")
        run([venv_python(), INSTALLER / "icons" / "render.py", ICONS], what="Rendering the icons",
            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
        step = time.monotonic()
        bundle = pyinstaller(version)
        log(f"PyInstaller finished in {time.monotonic() - step:.0f} s.")
        third_party_notices(bundle, version)
        audit(bundle, args.max_mb)
        outputs: list[Path] = []
        if not args.bundle_only:
            step = time.monotonic()
            DIST.mkdir(exist_ok=True)
            if sys.platform.startswith("linux"):
                outputs = linux(bundle, version)
            elif sys.platform == "win32":
                outputs = windows(bundle, version)
            elif sys.platform == "darwin":
                outputs = macos(version)
            else:
                raise BuildError(f"There is no installer recipe for {sys.platform}; the bundle is in {bundle}.")
            log(f"Installers made in {time.monotonic() - step:.0f} s.")
    except BuildError as exc:
        print(f"\nBuild failed: {exc}", file=sys.stderr)
        return 1
    for path in outputs:
        log(f"{path}  ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha256(path)[:16]}…)")
    log(f"Done in {time.monotonic() - started:.0f} s.")
    return 0


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
