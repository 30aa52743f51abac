"""Build LlamaDesk's one-folder bundle and this platform's installer.

    python installers/build.py                     # from the repository, with the project's venv

Linux:   dist/LlamaDesk-<version>-linux-<arch>/ (bundle, desktop file, metainfo, icons, install.sh) and its .tar.gz
Windows: dist/LlamaDesk/ and, when Inno Setup's ISCC.exe is found, dist/LlamaDesk-<version>-windows-<arch>-setup.exe
macOS:   dist/LlamaDesk.app and dist/LlamaDesk-<version>-macos-<arch>.dmg

The name and version come from the ``app`` package; the icons are rendered from resources/icons/llamadesk.svg.
Nothing here is specific to one machine, so CI and the tests run exactly this.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLERS = ROOT / "installers"
sys.path.insert(0, str(ROOT))

from app import APP_ID, APP_NAME, __version__  # noqa: E402  (the one place name, id and version come from)

HOMEPAGE = "https://github.com/llamadesk/llamadesk"
SOURCE_ICON = ROOT / "resources" / "icons" / "llamadesk.svg"
# The hicolor theme's usual sizes; the .ico and .icns take theirs from the same renderings.
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def machine() -> str:
    """The architecture as people name downloads: x86_64, arm64."""
    name = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(name, name)


def release_date() -> str:
    """Today, or SOURCE_DATE_EPOCH's day when set, so a rebuild of the same source gives the same metainfo."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
        if epoch
        else datetime.datetime.now(tz=datetime.timezone.utc)
    )
    return moment.date().isoformat()


def fill_template(template: Path, destination: Path, values: dict[str, str]) -> None:
    """Replace each @NAME@ in a template; a name left unfilled is a mistake in the template, so it stops the build."""
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    leftover = re.search(r"@([A-Z_]+)@", text)
    if leftover:
        raise SystemExit(f"{template.name}: no value for {leftover.group(0)}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(text, encoding="utf-8")


def template_values(bundle_dir_name: str = APP_NAME) -> dict[str, str]:
    return {
        "APP_ID": APP_ID,
        "APP_NAME": APP_NAME,
        "VERSION": __version__,
        "RELEASE_DATE": release_date(),
        "HOMEPAGE": HOMEPAGE,
        "BUNDLE_DIR": bundle_dir_name,
    }


def render_icons(svg: Path, out_dir: Path, sizes: tuple[int, ...] = ICON_SIZES) -> dict[int, Path]:
    """Render the SVG to square PNGs with Qt's own SVG renderer (no other image library needed)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    # QPainter needs a GUI application object even for an offscreen image.
    from PySide6.QtWidgets import QApplication

    # A full QApplication, not a QGuiApplication: in a process that later shows widgets (the test suite),
    # the first application object created is the only one, and widgets abort without a QApplication.
    _application = QApplication.instance() or QApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not an SVG that Qt can render.")
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered: dict[int, Path] = {}
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        path = out_dir / f"llamadesk-{size}.png"
        if not image.save(str(path)):  # the format follows the .png suffix
            raise SystemExit(f"Could not write {path}.")
        rendered[size] = path
    return rendered


def write_ico(pngs: dict[int, Path], destination: Path) -> None:
    """A Windows .ico holding PNG images (Windows Vista and later read those), sizes up to 256."""
    sizes = sorted(size for size in pngs if size <= 256)
    images = [pngs[size].read_bytes() for size in sizes]
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = len(header) + 16 * len(images)
    directory = b""
    for size, data in zip(sizes, images, strict=True):
        # Width and height are one byte each; 0 means 256.
        directory += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    destination.write_bytes(header + directory + b"".join(images))


# The .icns element types that hold PNG data, by pixel size (the @2x types reuse the larger renderings).
_ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),
    (b"icp6", 64),
    (b"ic12", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),
    (b"ic09", 512),
    (b"ic14", 512),
)


def write_icns(pngs: dict[int, Path], destination: Path) -> None:
    """A macOS .icns of PNG elements: the format macOS has read since 10.7, with no need for iconutil."""
    elements = b""
    for kind, size in _ICNS_TYPES:
        if size in pngs:
            data = pngs[size].read_bytes()
            elements += kind + struct.pack(">I", 8 + len(data)) + data
    destination.write_bytes(b"icns" + struct.pack(">I", 8 + len(elements)) + elements)


def run_pyinstaller(dist_dir: Path, work_dir: Path, icon: Path | None) -> None:
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist_dir),
        "--workpath",
        str(work_dir),
        str(INSTALLERS / "llamadesk.spec"),
    ]
    if icon is not None:
        command += ["--", "--icon", str(icon)]
    subprocess.run(command, check=True, cwd=ROOT)


def stage_linux_files(stage: Path, icons: dict[int, Path], bundle_dir_name: str) -> None:
    """The desktop integration beside the bundle, laid out as under a prefix, plus the install scripts."""
    values = template_values(bundle_dir_name)
    linux = INSTALLERS / "linux"
    fill_template(
        linux / f"{APP_ID}.desktop.in", stage / "share" / "applications" / f"{APP_ID}.desktop", values
    )
    fill_template(
        linux / f"{APP_ID}.metainfo.xml.in", stage / "share" / "metainfo" / f"{APP_ID}.metainfo.xml", values
    )
    hicolor = stage / "share" / "icons" / "hicolor"
    for size, png in icons.items():
        target = hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
    scalable = hicolor / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE_ICON, scalable)
    for script in ("install.sh", "uninstall.sh"):
        fill_template(linux / script, stage / script, values)
        (stage / script).chmod(0o755)


def make_tarball(stage: Path) -> Path:
    archive = stage.with_name(stage.name + ".tar.gz")
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        tar.add(stage, arcname=stage.name)
    return archive


def build_linux(out: Path, work: Path, icons: dict[int, Path], *, archive: bool) -> Path:
    stage = out / f"{APP_NAME}-{__version__}-linux-{machine()}"
    if stage.exists():
        shutil.rmtree(stage)
    run_pyinstaller(stage, work, icon=None)
    stage_linux_files(stage, icons, APP_NAME)
    if archive:
        return make_tarball(stage)
    return stage


def build_windows(out: Path, work: Path, icons: dict[int, Path]) -> Path:
    ico = work / "llamadesk.ico"
    write_ico(icons, ico)
    run_pyinstaller(out, work / "pyinstaller", icon=ico)
    compiler = shutil.which("iscc") or shutil.which(r"C:\Program Files (x86)\Inno Setup 6\ISCC.exe")
    if compiler is None:
        print("Inno Setup (ISCC.exe) not found: built the bundle only.", file=sys.stderr)
        return out / APP_NAME
    setup_name = f"{APP_NAME}-{__version__}-windows-{machine()}-setup"
    subprocess.run(
        [
            compiler,
            f"/DAppName={APP_NAME}",
            f"/DAppVersion={__version__}",
            f"/DAppId={APP_ID}",
            f"/DAppHomepage={HOMEPAGE}",
            f"/DBundleDir={out / APP_NAME}",
            f"/DIconFile={ico}",
            f"/DOutputDir={out}",
            f"/DOutputName={setup_name}",
            str(INSTALLERS / "windows" / "llamadesk.iss"),
        ],
        check=True,
    )
    return out / f"{setup_name}.exe"


def build_macos(out: Path, work: Path, icons: dict[int, Path]) -> Path:
    icns = work / "llamadesk.icns"
    write_icns(icons, icns)
    run_pyinstaller(out, work / "pyinstaller", icon=icns)
    app_bundle = out / f"{APP_NAME}.app"
    # The disk image shows the app beside a link to /Applications: drag one onto the other to install.
    dmg_root = work / "dmg"
    if dmg_root.exists():
        shutil.rmtree(dmg_root)
    dmg_root.mkdir(parents=True)
    subprocess.run(["ditto", str(app_bundle), str(dmg_root / app_bundle.name)], check=True)
    (dmg_root / "Applications").symlink_to("/Applications")
    dmg = out / f"{APP_NAME}-{__version__}-macos-{machine()}.dmg"
    subprocess.run(
        [
            "hdiutil",
            "create",
            "-volname",
            APP_NAME,
            "-srcfolder",
            str(dmg_root),
            "-format",
            "UDZO",
            "-ov",
            str(dmg),
        ],
        check=True,
    )
    return dmg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the bundle and installer go")
    parser.add_argument("--work", type=Path, default=ROOT / "build", help="PyInstaller's scratch folder")
    parser.add_argument(
        "--no-archive", action="store_true", help="Linux: stop at the staged folder, skip the .tar.gz"
    )
    args = parser.parse_args(argv)
    out: Path = args.dist.resolve()
    work: Path = args.work.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    icons = render_icons(SOURCE_ICON, work / "icons")
    if sys.platform.startswith("linux"):
        result = build_linux(out, work, icons, archive=not args.no_archive)
    elif sys.platform == "win32":
        result = build_windows(out, work, icons)
    elif sys.platform == "darwin":
        result = build_macos(out, work, icons)
    else:
        raise SystemExit(f"No installer for {sys.platform}.")
    print(f"Built {result} in {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
