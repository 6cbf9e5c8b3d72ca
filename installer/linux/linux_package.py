"""The Linux installers: a .deb (installs to /opt/meridian-terminal) and a portable .tar.gz.

Called by installer/build.py after PyInstaller; stdlib and dpkg-deb only. The .deb's Depends come from
installer/hooks/meridian_launch_check.py, the same list of system libraries the bundle leaves out and
the app checks at start, so the three cannot drift apart.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALLER = HERE.parent
sys.path.insert(0, str(INSTALLER / "hooks"))
sys.path.insert(0, str(INSTALLER))
import bundle_rules  # noqa: E402
from meridian_launch_check import LINUX_FONT_PACKAGE, LINUX_LIBRARIES  # noqa: E402

APP = bundle_rules.APP_NAME
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def depends() -> str:
    """Debian Depends: the system libraries, a font, and the C library the bundle was built against
    (a PyInstaller bundle runs on the build machine's glibc or newer, never older)."""
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]  # e.g. "glibc 2.36"
    packages = [f"libc6 (>= {glibc})"]
    for library in LINUX_LIBRARIES:
        if library.package not in packages:
            packages.append(library.package)
    packages.append(f"{LINUX_FONT_PACKAGE} | fonts-dejavu")
    return ", ".join(packages)


def apt_packages() -> str:
    """The first alternative of each, for an apt-get line a person can paste."""
    return " ".join(dict.fromkeys([lib.package.split(" | ")[0] for lib in LINUX_LIBRARIES] + [LINUX_FONT_PACKAGE]))


def _normalise_modes(root: Path) -> None:
    """Files 0644 (0755 if executable), folders 0755: what Debian policy asks, whatever the umask was."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            executable = path.stat().st_mode & stat.S_IXUSR
            path.chmod(0o755 if executable else 0o644)


def _copy_icons(icons: Path, share: Path) -> None:
    for size in ICON_SIZES:
        target = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(icons / f"meridian-{size}.png", target / f"{APP}.png")
    scalable = share / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle_rules.icon_svg(), scalable / f"{APP}.svg")


def make_deb(bundle: Path, version: str, icons: Path, out_dir: Path) -> Path:
    root = bundle.parent.parent / "deb-root"  # build/deb-root
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(bundle, root / "opt" / APP, symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True)
    # A symlink is enough: PyInstaller's bootloader finds _internal/ from the resolved executable path.
    (root / "usr" / "bin" / bundle_rules.EXE_NAME).symlink_to(f"/opt/{APP}/{bundle_rules.EXE_NAME}")
    share = root / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    shutil.copy2(HERE / f"{APP}.desktop", share / "applications" / f"{APP}.desktop")
    _copy_icons(icons, share)
    doc = share / "doc" / APP
    doc.mkdir(parents=True)
    notices = bundle / "THIRD-PARTY-NOTICES.txt"
    if notices.is_file():
        shutil.copy2(notices, doc / "copyright")

    _normalise_modes(root)
    installed_kib = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) // 1024
    control = (HERE / "control.in").read_text(encoding="utf-8")
    for key, value in {"VERSION": version, "ARCH": arch(), "INSTALLED_SIZE": str(installed_kib),
                       "DEPENDS": depends()}.items():
        control = control.replace(f"@{key}@", value)
    (root / "DEBIAN").mkdir(mode=0o755)
    (root / "DEBIAN" / "control").write_text(control, encoding="utf-8")
    (root / "DEBIAN" / "control").chmod(0o644)

    out = out_dir / f"{APP}_{version}_{arch()}.deb"
    out.unlink(missing_ok=True)
    # xz: every dpkg reads it (zstd needs dpkg 1.21.18+). --root-owner-group: root-owned files without fakeroot.
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(root)  # a second 190 MB copy of the bundle; `dpkg-deb -x` recreates it from the .deb
    return out


def make_tarball(bundle: Path, version: str, icons: Path, out_dir: Path) -> Path:
    top = f"{APP}-{version}"
    machine = os.uname().machine
    out = out_dir / f"{APP}-{version}-linux-{machine}.tar.gz"
    readme = (HERE / "README-portable.txt").read_text(encoding="utf-8")
    readme = readme.replace("@VERSION@", version).replace("@ARCH@", machine).replace("@PACKAGES@", apt_packages())
    stage = bundle.parent.parent / "tar-extra"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "share").mkdir(parents=True)
    (stage / "README.txt").write_text(readme, encoding="utf-8")
    shutil.copy2(HERE / "install-desktop-entry.sh", stage / "install-desktop-entry.sh")
    shutil.copy2(HERE / f"{APP}.desktop", stage / "share" / f"{APP}.desktop")
    shutil.copy2(icons / "meridian-256.png", stage / "share" / f"{APP}.png")
    _normalise_modes(stage)
    (stage / "install-desktop-entry.sh").chmod(0o755)

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=top, filter=owned_by_root)
        for extra in sorted(stage.iterdir()):
            tar.add(extra, arcname=f"{top}/{extra.name}", filter=owned_by_root)
    return out
