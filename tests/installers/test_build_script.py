"""installers/build.py's parts that need no PyInstaller run: icons, templates, the desktop files' validity.

Seconds, not minutes, so the desktop integration is checked even when the bundle tests are deselected.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app import APP_NAME, __version__
from tests.installers.build_module import ROOT, build_script


@pytest.fixture(scope="module")
def icons(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    rendered: dict[int, Path] = build_script.render_icons(
        build_script.SOURCE_ICON, tmp_path_factory.mktemp("icons")
    )
    return rendered


def test_icons_are_rendered_at_every_size_from_the_one_svg(icons: dict[int, Path]) -> None:
    from PySide6.QtGui import QImage

    assert sorted(icons) == [16, 24, 32, 48, 64, 128, 256, 512]
    for size, path in icons.items():
        image = QImage(str(path))
        assert (image.width(), image.height()) == (size, size)
        # Drawn, not blank: the corners are transparent (rounded tile), the middle is opaque.
        assert image.pixelColor(0, 0).alpha() == 0
        assert image.pixelColor(size // 2, size // 2).alpha() == 255


def test_windows_and_macos_icon_files_hold_every_size(icons: dict[int, Path], tmp_path: Path) -> None:
    from PySide6.QtGui import QImageReader

    ico = tmp_path / "llamadesk.ico"
    icns = tmp_path / "llamadesk.icns"
    build_script.write_ico(icons, ico)
    build_script.write_icns(icons, icns)
    for path, expected in (
        (ico, [16, 24, 32, 48, 64, 128, 256]),
        (icns, [16, 32, 32, 64, 64, 128, 256, 256, 512, 512]),
    ):
        reader = QImageReader(str(path))
        widths = []
        for index in range(reader.imageCount()):
            reader.jumpToImage(index)
            widths.append(reader.read().width())
        assert sorted(widths) == expected, path.name


def test_staged_desktop_files_validate(icons: dict[int, Path], tmp_path: Path) -> None:
    build_script.stage_linux_files(tmp_path, icons, APP_NAME)
    app_id = build_script.APP_ID
    desktop_file = tmp_path / "share" / "applications" / f"{app_id}.desktop"
    metainfo = tmp_path / "share" / "metainfo" / f"{app_id}.metainfo.xml"

    validator = shutil.which("desktop-file-validate")
    assert validator, (
        "desktop-file-validate is missing: install the Debian package desktop-file-utils"
        " (`bash tests/system-packages.sh` does)"
    )
    result = subprocess.run([validator, str(desktop_file)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    validator = shutil.which("appstreamcli")
    assert validator, (
        "appstreamcli is missing: install the Debian package appstream (`bash tests/system-packages.sh` does)"
    )
    result = subprocess.run(
        [validator, "validate", "--no-net", str(metainfo)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

    # Every placeholder was filled, and the version is the package's.
    for path in (desktop_file, metainfo, tmp_path / "install.sh", tmp_path / "uninstall.sh"):
        assert not re.search(r"@[A-Z_]+@", path.read_text(encoding="utf-8")), path.name
    assert f'<release version="{__version__}"' in metainfo.read_text(encoding="utf-8")
    assert (tmp_path / "install.sh").stat().st_mode & 0o111


def test_a_template_with_an_unknown_placeholder_stops_the_build(tmp_path: Path) -> None:
    template = tmp_path / "broken.in"
    template.write_text("Name=@APP_NAME@\nComment=@NO_SUCH_VALUE@\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="@NO_SUCH_VALUE@"):
        build_script.fill_template(template, tmp_path / "out", build_script.template_values())


def test_the_window_announces_the_desktop_files_id() -> None:
    """The window's desktop file name must be the installed .desktop file's, or docks show a generic icon."""
    from app import APP_ID

    source = (ROOT / "app" / "ui" / "application.py").read_text(encoding="utf-8")
    assert "setDesktopFileName(APP_ID)" in source
    assert build_script.APP_ID == APP_ID
    assert (ROOT / "installers" / "linux" / f"{build_script.APP_ID}.desktop.in").is_file()
