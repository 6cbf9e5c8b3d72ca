"""Where Meridian Terminal keeps its files.

Defaults follow each operating system's conventions (via platformdirs); the
command line can override the settings file (`--config`) and the data
directory (`--data-dir`). Nothing is created on import or by `resolve_paths`:
directories appear only when `ensure_dirs` is called, so a `--help` run or a
test never litters the user's home.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "meridian-terminal"
APP_AUTHOR = "Meridian"
SETTINGS_FILENAME = "settings.toml"
DATABASE_FILENAME = "meridian.sqlite3"


@dataclass(frozen=True)
class AppPaths:
    config_file: Path
    data_dir: Path
    log_dir: Path

    @property
    def database_file(self) -> Path:
        """The one SQLite file (see `app.store`)."""
        return self.data_dir / DATABASE_FILENAME

    def ensure_dirs(self) -> None:
        ensure_dirs(self)


def resolve_paths(config: Path | None = None, data_dir: Path | None = None) -> AppPaths:
    """The files to use; `config` and `data_dir` come from `--config` / `--data-dir`.

    With `--data-dir`, logs go to `<data_dir>/logs` so that one directory holds
    everything a portable or test run writes.
    """
    if config is not None:
        config_file = _absolute(config)
    else:
        config_file = Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR)) / SETTINGS_FILENAME
    if data_dir is not None:
        data = _absolute(data_dir)
        logs = data / "logs"
    else:
        data = Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))
        logs = Path(platformdirs.user_log_dir(APP_NAME, APP_AUTHOR))
    return AppPaths(config_file=config_file, data_dir=data, log_dir=logs)


def ensure_dirs(paths: AppPaths) -> None:
    """Create the settings file's folder, the data dir and the log dir if missing."""
    for directory in (paths.config_file.parent, paths.data_dir, paths.log_dir):
        directory.mkdir(parents=True, exist_ok=True)


def _absolute(path: Path) -> Path:
    # Absolute, so a later chdir (file dialogs on some platforms do that) cannot move our files.
    return Path(path).expanduser().absolute()
