"""Measures the packaged app's start: seconds from launch to the first painted window, under Xvfb.

    python installer/measure_start.py build/bundle/meridian-terminal/meridian --runs 5

Needs Xvfb, xdotool and ImageMagick's `import` (Debian/Ubuntu: apt-get install xvfb xdotool imagemagick)
and PySide6 (any venv of the project) to look at the grabs. Each run starts the app with a fresh HOME
(a first start: no settings, no database) in `--smoke-test` mode, polls for its window, grabs it, and
stops the clock at the first grab that shows a painted window (many colours, not a blank frame). It
also reads the process's CPU time at that moment: on a busy shared machine the wall time mostly
measures the other load, the CPU time what the start itself costs. tests/packaging uses `measure`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WINDOW_TITLE = "Meridian Terminal"
PAINTED_COLOURS = 50
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Start:
    visible_s: float     # the window is mapped
    painted_s: float     # a grab shows it painted
    cpu_s: float         # the process's user + system CPU time at that grab
    exit_code: int
    output: str
    first_paint_png: bytes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def painted_colours(png: bytes) -> int:
    """Distinct colours on a grid of the image: a bare window is 1-3, a painted terminal hundreds."""
    from PySide6.QtGui import QImage

    image = QImage.fromData(png, "PNG")
    if image.isNull():
        return 0
    return len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)})


def measure(exe: Path, env: dict[str, str], extra_args: list[str] | None = None, timeout: float = 60) -> Start:
    """One start of `exe` on the X display in env["DISPLAY"]."""
    started = time.monotonic()
    app = subprocess.Popen([str(exe), "--smoke-test", "--smoke-seconds", "3", *(extra_args or [])], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    visible = painted = cpu = None
    grab = b""
    try:
        while time.monotonic() - started < timeout and app.poll() is None:
            found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", f"^{WINDOW_TITLE}"],
                                   env=env, capture_output=True, text=True, check=False).stdout.split()
            if found:
                visible = visible or time.monotonic() - started
                at, at_cpu = time.monotonic() - started, cpu_seconds(app.pid)  # painted by then, if the grab says so
                grab = subprocess.run(["import", "-silent", "-window", found[-1], "png:-"], env=env,
                                      capture_output=True, timeout=20, check=False).stdout
                if painted_colours(grab) > PAINTED_COLOURS:
                    painted, cpu = at, at_cpu
                    break
            time.sleep(0.02)
        output, _ = app.communicate(timeout=timeout)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    if painted is None or cpu is None:
        raise RuntimeError(f"no painted window appeared (exit code {app.returncode}):\n{output[-2000:]}")
    return Start(visible or painted, painted, cpu, app.returncode, output, grab)


def fresh_env(home: Path, display: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "DISPLAY": display,
            "XDG_RUNTIME_DIR": str(home)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exe", type=Path, help="the packaged executable (or /usr/bin/meridian)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for tool in ("Xvfb", "xdotool", "import"):
        if not shutil.which(tool):
            print(f"{tool} is not installed: apt-get install xvfb xdotool imagemagick", file=sys.stderr)
            return 2
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        display = f":{pipe.readline().strip()}"
    runs: list[Start] = []
    try:
        for n in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="meridian-start-") as home:
                start = measure(args.exe, fresh_env(Path(home), display))
            runs.append(start)
            print(f"run {n + 1}: visible {start.visible_s:.2f} s, painted {start.painted_s:.2f} s wall, "
                  f"{start.cpu_s:.2f} s CPU (load {os.getloadavg()[0]:.1f}), exit {start.exit_code}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    walls, cpus = [r.painted_s for r in runs], [r.cpu_s for r in runs]
    print(f"first painted window: min {min(walls):.2f} s, median {statistics.median(walls):.2f} s wall; "
          f"min {min(cpus):.2f} s, median {statistics.median(cpus):.2f} s CPU")
    return 0 if all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
