"""What goes into the PyInstaller bundle and what must stay out: shared by the spec, build.py's audit and the tests.

Plain stdlib so that the spec (running in the build venv), build.py (any Python 3.12) and the tests can import it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "meridian-terminal"  # the bundle folder, the .deb package, /opt/<APP_NAME>
EXE_NAME = "meridian"           # the executable and the /usr/bin launcher
DISPLAY_NAME = "Meridian Terminal"
SOURCE_PACKAGES = ("app", "ui")
# pyproject's [tool.setuptools.package-data]: resources that ship inside the packages.
PACKAGE_DATA_SUFFIXES = (".qss", ".svg", ".png", ".toml")


def icon_svg(root: Path = ROOT) -> Path:
    """The app icon's one source: ui/meridian.svg, the window's and the tray's icon (shipped as package data)."""
    return root / "ui" / "meridian.svg"


# pyqtgraph needs these whatever the app imports (0.14's PlotCurveItem imports QtOpenGL and
# QtOpenGLWidgets unconditionally, through importlib); the rest come from the app's own imports.
QT_BASE_MODULES = frozenset({"QtCore", "QtGui", "QtWidgets", "QtOpenGL", "QtOpenGLWidgets"})
_QT_IMPORT = re.compile(r"\bPySide6\.(Qt[A-Za-z0-9]+)|\bfrom\s+PySide6\s+import\s+([^\n(]+|\([^)]*\))")

# Modules that something imports optionally but the app never runs: leaving them out keeps the bundle
# small and stops PyInstaller from dragging in their native dependencies.
EXCLUDED_MODULES = (
    "tkinter", "_tkinter", "turtledemo", "idlelib", "pydoc_data", "lib2to3", "ensurepip",
    "pip", "setuptools", "pkg_resources", "distutils", "wheel",
    "IPython", "matplotlib", "PIL", "scipy", "pandas", "OpenGL", "PyQt5", "PyQt6", "PySide2",
    "pyqtgraph.examples", "pyqtgraph.opengl", "pyqtgraph.jupyter",
    "numpy.tests", "numpy.f2py", "numpy.distutils",
    "ccxt.pro", "ccxt.test",  # the app streams through its own websockets (app/streams), never ccxt.pro
    "pytest", "_pytest", "hypothesis", "pytest_qt", "pytestqt", "aiosmtpd",
)

# Qt plugins the app never loads, as "<type>/<name>" without "lib" and extension, so one list serves
# libqgtk3.so, qgtk3.dll and libqgtk3.dylib; a trailing "/" means the whole type. libqgtk3 matters most:
# it links GTK 3 and so pulls the build machine's GTK, Pango and Cairo into the bundle.
EXCLUDED_QT_PLUGINS = (
    "platformthemes/qgtk3", "platforms/qeglfs", "platforms/qlinuxfb", "platforms/qvnc", "platforms/qvkkhrdisplay",
    "platforms/qminimalegl", "egldeviceintegrations/", "generic/",
    "imageformats/qpdf", "imageformats/qtiff", "imageformats/qwebp", "imageformats/qtga", "imageformats/qwbmp",
    "imageformats/qicns", "platforminputcontexts/qtvirtualkeyboardplugin",
    "printsupport/", "sqldrivers/", "qmltooling/", "designer/", "tls/", "networkinformation/",
    "wayland-graphics-integration-server/", "vectorimageformats/",
    # Wayland: keep the platform plugin, the standard xdg-shell and the decorations; the GL buffer
    # integrations would pull QtOpenGL's GL paths for nothing (the widgets paint in software, into shared memory).
    "wayland-graphics-integration-client/", "wayland-shell-integration/fullscreen-shell",
    "wayland-shell-integration/ivi-shell", "wayland-shell-integration/qt-shell",
    "wayland-shell-integration/wl-shell",
)

# Files that must never be in the bundle; the audit fails the build if one is found (pattern, why).
FORBIDDEN = (
    (r"(^|/)libgtk-3|libgdk-3|libpango|libcairo|libharfbuzz|libatk-", "GTK and its libraries (the Qt GTK theme plugin)"),
    (r"Qt6?(Qml|Quick|WebEngine|Pdf|Multimedia|3D|Designer|Charts|DataVisualization|Graphs|Network|EglFS)",
     "an unused Qt module"),
    (r"PySide6/(Qt/)?qml/", "QML imports"),
    (r"(^|/)(tkinter|_tkinter|libtk|libtcl)", "Tk"),
)


def qt_modules_used(root: Path = ROOT) -> set[str]:
    """The PySide6 modules main.py, app/ and ui/ import, plus the three pyqtgraph needs."""
    used = set(QT_BASE_MODULES)
    for path in source_files(root):
        for dotted, names in _QT_IMPORT.findall(path.read_text(encoding="utf-8", errors="replace")):
            if dotted:
                used.add(dotted)
            for name in re.split(r"[\s,()]+", names):
                if name.startswith("Qt"):
                    used.add(name)
    return used


def all_qt_modules(pyside_dir: Path) -> set[str]:
    """Every Qt binding module the installed PySide6 has (QtCore.abi3.so, QtCore.pyd, ...)."""
    return {p.name.split(".")[0] for p in pyside_dir.iterdir() if p.name.startswith("Qt") and p.suffix in (".so", ".pyd")}


def source_files(root: Path = ROOT) -> Iterator[Path]:
    yield root / "main.py"
    for package in SOURCE_PACKAGES:
        yield from (p for p in sorted((root / package).rglob("*.py")) if "__pycache__" not in p.parts)


def source_modules(root: Path = ROOT) -> list[str]:
    """Every module of app/ and ui/. Collected explicitly because some are imported by name at run
    time (app/venues/factory.py uses importlib), which PyInstaller's import scan cannot see."""
    modules = []
    for path in source_files(root):
        if path.name == "main.py":
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.append(".".join(parts))
    return modules


def package_data(root: Path = ROOT) -> list[tuple[str, str]]:
    """(source file, destination folder) for every resource in app/ and ui/, as the wheel ships them."""
    found = []
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and path.suffix in PACKAGE_DATA_SUFFIXES and "__pycache__" not in path.parts:
                found.append((str(path), str(path.parent.relative_to(root))))
    return found


def is_excluded_plugin(dest: str) -> bool:
    """`dest`: a bundle path such as PySide6/Qt/plugins/platformthemes/libqgtk3.so (or qgtk3.dll)."""
    dest = dest.replace("\\", "/")
    if "/plugins/" not in dest:
        return False
    kind, _, filename = dest.split("/plugins/", 1)[1].rpartition("/")
    stem = filename.split(".")[0].removeprefix("lib")
    return any(f"{kind}/{stem}".startswith(prefix) if not prefix.endswith("/") else f"{kind}/" == prefix
               for prefix in EXCLUDED_QT_PLUGINS)


def is_translation(dest: str) -> bool:
    """Qt's own .qm translations (PySide6/Qt/translations on Linux and macOS, PySide6/translations on
    Windows): the UI is English-only, so Qt's dialogs stay English too."""
    dest = dest.replace("\\", "/")
    return dest.startswith("PySide6/") and "/translations/" in dest and dest.endswith(".qm")


def forbidden(paths: Iterable[str]) -> list[str]:
    """Sentences for each file in the bundle that must not be there."""
    problems = []
    for path in paths:
        for pattern, why in FORBIDDEN:
            if re.search(pattern, path):
                problems.append(f"{path}: {why}")
                break
    return problems


def needed_libraries(path: str) -> set[str]:
    """The sonames an ELF file links directly (DT_NEEDED), via binutils' objdump (PyInstaller needs it too)."""
    out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=False).stdout
    return {line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")}


def prune_unlinked_system_libraries(binaries: list) -> list:
    """Drop top-level libraries (PyInstaller puts system libraries there) that nothing kept links directly.

    `binaries` is PyInstaller's TOC: (dest name, source path, typecode). Python extensions and the
    libraries inside packages are roots; a top-level library stays when a kept file needs it."""
    def top_level(entry: tuple) -> bool:
        name = entry[0].replace("\\", "/")
        # Extensions (typecode EXTENSION) are Python modules, and libpython is dlopen()ed by the
        # bootloader, so nothing links either: both are roots.
        return entry[2] == "BINARY" and "/" not in name and not name.startswith("libpython")

    candidates = {entry[0]: entry for entry in binaries if top_level(entry)}
    kept = [entry for entry in binaries if not top_level(entry)]
    queue = [entry[1] for entry in kept]
    reached: set[str] = set()
    while queue:
        for soname in needed_libraries(queue.pop()):
            if soname in candidates and soname not in reached:
                reached.add(soname)
                queue.append(candidates[soname][1])
    dropped = sorted(set(candidates) - reached)
    if dropped:
        print(f"meridian.spec: left out system libraries nothing links: {', '.join(dropped)}")
    return kept + [candidates[name] for name in sorted(reached)]
