"""desktop-notifier (app/notify/desktop.py) has no PyInstaller hook of its own. It picks its backend module
by platform at run time and reads its default icon with importlib.resources from the
`desktop_notifier.resources` folder, so both must be collected explicitly."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules

hiddenimports = collect_submodules("desktop_notifier.backends")
datas = collect_data_files("desktop_notifier")
