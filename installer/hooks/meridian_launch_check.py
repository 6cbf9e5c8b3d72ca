"""Checks the packaged app runs before main.py, so a missing system library is a sentence, not a crash.

Bundled into the app (the spec lists it as a hidden import) and imported by `rthook_meridian.py`.
build.py and installer/linux/package.py import `LINUX_LIBRARIES` from here too, so the .deb's Depends,
the libraries left out of the bundle and the launch check are one list.

Why a check at all: Qt aborts the process (qFatal, no Python exception) when its xcb platform plugin
cannot load, and a library missing under libQt6Gui is an ImportError traceback. Neither tells the user
which package to install.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

EXIT_MISSING_LIBRARIES = 3  # distinct from the app's own 1 (failure) and 2 (bad usage / venue error)


@dataclass(frozen=True)
class SystemLibrary:
    soname: str
    package: str      # Debian/Ubuntu package; "a | b" where Ubuntu renamed it (the t64 transition)
    needed_for: str   # "core": always; "gui": any Qt window, also offscreen; "xcb": X11; "wayland": Wayland


# The libraries Qt (PySide6 wheels) links that the bundle leaves to the system: they belong to the
# graphics stack, the font configuration and the session bus, which must match the user's machine.
LINUX_LIBRARIES: tuple[SystemLibrary, ...] = (
    # The system's C++ runtime, not the build machine's: a GL driver loaded into the process (Mesa's
    # LLVM) may need a newer libstdc++ than the one a bundle would carry.
    SystemLibrary("libstdc++.so.6", "libstdc++6", "core"),
    SystemLibrary("libgcc_s.so.1", "libgcc-s1", "core"),
    SystemLibrary("libEGL.so.1", "libegl1", "gui"),
    SystemLibrary("libGL.so.1", "libgl1", "gui"),
    SystemLibrary("libfontconfig.so.1", "libfontconfig1", "gui"),
    SystemLibrary("libfreetype.so.6", "libfreetype6", "gui"),
    SystemLibrary("libglib-2.0.so.0", "libglib2.0-0t64 | libglib2.0-0", "gui"),
    SystemLibrary("libgthread-2.0.so.0", "libglib2.0-0t64 | libglib2.0-0", "gui"),
    SystemLibrary("libdbus-1.so.3", "libdbus-1-3", "gui"),
    SystemLibrary("libxkbcommon.so.0", "libxkbcommon0", "gui"),
    SystemLibrary("libX11.so.6", "libx11-6", "gui"),
    SystemLibrary("libxcb.so.1", "libxcb1", "xcb"),
    SystemLibrary("libX11-xcb.so.1", "libx11-xcb1", "xcb"),
    SystemLibrary("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "xcb"),
    SystemLibrary("libxcb-cursor.so.0", "libxcb-cursor0", "xcb"),
    SystemLibrary("libxcb-icccm.so.4", "libxcb-icccm4", "xcb"),
    SystemLibrary("libxcb-util.so.1", "libxcb-util1", "xcb"),
    SystemLibrary("libxcb-image.so.0", "libxcb-image0", "xcb"),
    SystemLibrary("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb"),
    SystemLibrary("libxcb-randr.so.0", "libxcb-randr0", "xcb"),
    SystemLibrary("libxcb-render-util.so.0", "libxcb-render-util0", "xcb"),
    SystemLibrary("libxcb-render.so.0", "libxcb-render0", "xcb"),
    SystemLibrary("libxcb-shape.so.0", "libxcb-shape0", "xcb"),
    SystemLibrary("libxcb-shm.so.0", "libxcb-shm0", "xcb"),
    SystemLibrary("libxcb-sync.so.1", "libxcb-sync1", "xcb"),
    SystemLibrary("libxcb-xfixes.so.0", "libxcb-xfixes0", "xcb"),
    SystemLibrary("libxcb-xkb.so.1", "libxcb-xkb1", "xcb"),
    SystemLibrary("libxcb-glx.so.0", "libxcb-glx0", "xcb"),
    SystemLibrary("libwayland-client.so.0", "libwayland-client0", "wayland"),
    SystemLibrary("libwayland-cursor.so.0", "libwayland-cursor0", "wayland"),
    SystemLibrary("libwayland-egl.so.1", "libwayland-egl1", "wayland"),
)
# Without any font Qt draws every letter as an empty box; the .deb depends on this one.
LINUX_FONT_PACKAGE = "fonts-dejavu-core"
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")


def platforms_in_use(environ: dict[str, str] | os._Environ[str]) -> set[str]:
    """Which library groups this start needs, from Qt's own choice of platform plugin."""
    requested = environ.get("QT_QPA_PLATFORM", "")
    if requested:
        names = {name.split(":")[0] for name in requested.split(";")}
        return {"core", "gui"} | ({"xcb"} & names) | ({"wayland"} & names)
    # Qt 6 tries Wayland first on a Wayland session and falls back to xcb (XWayland): both can be used.
    if environ.get("WAYLAND_DISPLAY") or environ.get("XDG_SESSION_TYPE") == "wayland":
        return {"core", "gui", "wayland", "xcb"}
    return {"core", "gui", "xcb"}


def missing_libraries(groups: set[str]) -> list[SystemLibrary]:
    missing = []
    for library in LINUX_LIBRARIES:
        if library.needed_for not in groups:
            continue
        try:
            ctypes.CDLL(library.soname)
        except OSError:
            missing.append(library)
    return missing


def no_fonts() -> bool:
    for folder in FONT_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir() and any(p.suffix.lower() in (".ttf", ".otf", ".ttc", ".pfb") for p in root.rglob("*")):
            return False
    return True


def message_for(missing: list[SystemLibrary]) -> str:
    packages = list(dict.fromkeys(lib.package.split(" | ")[0] for lib in missing))
    names = ", ".join(lib.soname for lib in missing)
    return (
        f"Meridian Terminal cannot open its window because this system lacks {names}. "
        f"Install the package{'s' if len(packages) > 1 else ''} {' '.join(packages)} "
        f"(Debian/Ubuntu: sudo apt-get install {' '.join(packages)}), then start it again."
    )


def tell_user(text: str) -> None:
    """stderr for a terminal; a dialog too when started from the desktop menu, where stderr is unseen."""
    print(text, file=sys.stderr)
    if sys.stderr.isatty() or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    for tool, args in (("zenity", ["--error", "--no-wrap", "--text"]), ("kdialog", ["--error"]),
                       ("notify-send", ["Meridian Terminal"])):
        if shutil.which(tool):
            try:
                subprocess.run([tool, *args, text], timeout=300, check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                continue
            return


def missing_plugins(groups: set[str], bundle: Path) -> list[str]:
    """Platform plugins this start needs that the bundle lacks (a damaged or hand-trimmed install)."""
    plugins = bundle / "PySide6" / "Qt" / "plugins" / "platforms"
    wanted = {"xcb": "libqxcb.so", "wayland": "libqwayland.so"}
    return [name for group, name in wanted.items() if group in groups and not (plugins / name).is_file()]


def check_linux(argv: list[str], environ: dict[str, str] | os._Environ[str], bundle: Path) -> int | None:
    """None when the app can start; else the exit code, after telling the user what to install."""
    if not sys.platform.startswith("linux") or _headless_command(argv):
        return None
    groups = platforms_in_use(environ)
    lost = missing_plugins(groups - {"wayland"}, bundle)  # Wayland is optional: Qt falls back to xcb
    if lost:
        tell_user(f"Meridian Terminal cannot open its window because its Qt platform plugin {', '.join(lost)} "
                  f"is missing from {bundle}. The installation is damaged: reinstall Meridian Terminal.")
        return EXIT_MISSING_LIBRARIES
    missing = missing_libraries(groups)
    if missing:
        tell_user(message_for(missing))
        return EXIT_MISSING_LIBRARIES
    if no_fonts():
        # Not fatal: the window works, but the user should know why the text is missing.
        print(f"Meridian Terminal found no fonts on this system, so text may show as empty boxes. "
              f"Install one, e.g. sudo apt-get install {LINUX_FONT_PACKAGE}.", file=sys.stderr)
    return None


def _headless_command(argv: list[str]) -> bool:
    """`meridian watch`, `meridian relay` and --help never load Qt, so they need none of this."""
    return any(arg in ("watch", "relay", "-h", "--help") for arg in argv[1:])
