"""Replaces PyInstaller's PySide6.QtGui hook (hooks in installer/hooks take precedence) to leave out the
Qt plugins the app never loads *before* PyInstaller resolves their libraries: dropping a plugin after
Analysis would keep what it linked, e.g. libqgtk3.so's GTK 3, Pango and Cairo from the build machine."""

from PyInstaller.utils.hooks import logger
from PyInstaller.utils.hooks.qt import add_qt6_dependencies

import bundle_rules  # on sys.path: meridian.spec puts installer/ there

hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
_before = len(binaries)
binaries = [(src, dest) for src, dest in binaries
            if not bundle_rules.is_excluded_plugin(f"{dest}/{src.replace(chr(92), '/').rsplit('/', 1)[-1]}")]
logger.info("meridian hook-PySide6.QtGui: left out %d of %d Qt plugins", _before - len(binaries), _before)
