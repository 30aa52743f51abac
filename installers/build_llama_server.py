"""Build llama.cpp's own ``llama-server``, ``llama-bench`` and ``llama-embedding`` from the llama.cpp that
llama-cpp-python vendors.

    python installers/build_llama_server.py            # from the repository, with the project's venv
    python installers/build_llama_server.py --force    # build again even if the binaries are there

``llamadesk bench --serve`` compares LlamaDesk's API with the native C++ server on the same model, ``llamadesk
bench`` the engine's generation and prompt speed with ``llama-bench`` (tg128, pp512), and ``bench --library`` the
embedding speed with the native embedding tool; a comparison is only fair against the same llama.cpp: this takes the source distribution of the llama-cpp-python
version that is installed (``pip download``, from PyPI, the only place packages come from here), unpacks its
``vendor/llama.cpp`` into the user's cache folder and builds the tools there with CMake (Release, the CPU's own
instructions as llama-cpp-python's own build uses, no libcurl, static libraries so each binary stands alone, and no
web UI: its assets would be downloaded at build time). The benchmark finds them there by itself
(app/bench/serve.py: ``native_tool_path``); the script prints their paths.

It runs at the lowest CPU priority (``nice 19``) so it takes only spare time from whatever else runs: on a 2-core
machine the build takes several minutes. It needs CMake (``pip install cmake`` into the venv will do) and a C++17
compiler. CI does not run it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.bench.serve import native_tool_path, native_tools_dir  # noqa: E402  (the one place the location is defined)

PACKAGE = "llama-cpp-python"
TOOLS = ("llama-server", "llama-bench", "llama-embedding")
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=ON",  # llama-embedding is one; only the tools named are built
    # The server's web UI is either built with npm or downloaded: neither is possible nor needed here.
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


class BuildError(Exception):
    """A step failed in a way the person can act on; the message says what to do."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="build again even if the binaries exist")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, metavar="N", help="parallel compile jobs"
    )
    args = parser.parse_args(argv)
    if hasattr(os, "nice"):
        os.nice(19)  # inherited by pip, cmake and the compilers
    try:
        paths = build(force=args.force, jobs=args.jobs)
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def build(*, force: bool = False, jobs: int = 1) -> list[Path]:
    """Build the tools for the installed llama-cpp-python, unless they are built already; their paths."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError as error:
        raise BuildError(
            f"{PACKAGE} is not installed in this Python; install LlamaDesk's venv first."
        ) from error
    binaries = [native_tool_path(tool, version) for tool in TOOLS]
    if not force and all(binary.is_file() for binary in binaries):
        say(f"Already built for {PACKAGE} {version}.")
        return binaries
    cmake = find_cmake()
    work_dir = native_tools_dir(version)
    work_dir.mkdir(parents=True, exist_ok=True)
    source_dir = unpack_source(version, work_dir)
    build_dir = work_dir / "build"
    started = time.monotonic()
    say(f"Configuring llama.cpp from {PACKAGE} {version}…")
    run([cmake, "-S", str(source_dir), "-B", str(build_dir), *CMAKE_OPTIONS])
    say(f"Building {', '.join(TOOLS)} with {jobs} job(s); this takes several minutes…")
    run([cmake, "--build", str(build_dir), "--config", "Release", "-j", str(jobs), "--target", *TOOLS])
    missing = [str(binary) for binary in binaries if not binary.is_file()]
    if missing:
        raise BuildError(
            f"The build finished but did not produce {', '.join(missing)}; see CMake's output above."
        )
    say(f"Built in {time.monotonic() - started:.0f} s.")
    return binaries


def find_cmake() -> str:
    found = shutil.which("cmake") or shutil.which("cmake", path=str(Path(sys.executable).parent))
    if found is None:
        raise BuildError(
            "CMake was not found; install it (pip install cmake, into this venv) and run this script again."
        )
    return found


def unpack_source(version: str, work_dir: Path) -> Path:
    """``vendor/llama.cpp`` of the sdist of ``version``, unpacked under ``work_dir`` (once)."""
    source_dir = work_dir / "source"
    llama_cpp_dir = source_dir / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (llama_cpp_dir / "CMakeLists.txt").is_file():
        return llama_cpp_dir
    with tempfile.TemporaryDirectory(prefix="llama-cpp-sdist-") as download_dir:
        say(f"Downloading the source of {PACKAGE} {version}…")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--dest",
                download_dir,
                f"{PACKAGE}=={version}",
            ]
        )
        archives = sorted(Path(download_dir).glob("*.tar.gz"))
        if not archives:
            raise BuildError(
                f"pip downloaded no source archive of {PACKAGE} {version}; see its output above."
            )
        say("Unpacking…")
        shutil.rmtree(source_dir, ignore_errors=True)
        with tarfile.open(archives[0]) as archive:
            # The "data" filter refuses links and paths that would land outside the folder.
            archive.extractall(source_dir, filter="data")
    if not (llama_cpp_dir / "CMakeLists.txt").is_file():
        raise BuildError(
            f"The source of {PACKAGE} {version} has no vendor/llama.cpp; this version cannot be built."
        )
    return llama_cpp_dir


def run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as error:
        raise BuildError(
            f"{Path(command[0]).name} failed (exit code {error.returncode}); its output above says why."
        ) from error


def say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
