"""Export a table to CSV without blocking the window: a non-modal file dialog, the write on a thread."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QAbstractItemModel, Qt
from PySide6.QtWidgets import QFileDialog, QWidget


def table_rows(model: QAbstractItemModel) -> tuple[list[str], list[list[str]]]:
    headers = [str(model.headerData(c, Qt.Orientation.Horizontal)) for c in range(model.columnCount())]
    rows = [[str(model.data(model.index(r, c)) or "") for c in range(model.columnCount())] for r in range(model.rowCount())]
    return headers, rows


def write_csv(path: Path, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
    tmp.replace(path)


def export_model(parent: QWidget, model: QAbstractItemModel, name: str, done: Callable[[str], None]) -> QFileDialog:
    """Ask where to save (window-modal, no nested event loop), then write on a worker thread."""
    dialog = QFileDialog(parent, f"Export {name} to CSV", f"{name.lower().replace(' ', '-')}.csv", "CSV files (*.csv)")
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    dialog.setDefaultSuffix("csv")

    def chosen(path: str) -> None:
        headers, rows = table_rows(model)  # read on the UI thread; write off it
        task = asyncio.ensure_future(asyncio.to_thread(write_csv, Path(path), headers, rows))
        task.add_done_callback(
            lambda t: done(f"Could not write {path}: {t.exception()}" if t.exception() else f"Saved {len(rows)} rows to {path}.")
        )

    dialog.fileSelected.connect(chosen)
    dialog.open()
    return dialog
