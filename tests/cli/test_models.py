"""``llamadesk models ...``: the menu for this machine, search, download (and Ctrl+C), the queue, installed
models and removing them, against the fake hub on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.downloads.queue import STATE_PAUSED, DownloadQueue
from app.core.paths import app_paths
from tests.fixtures.fake_hub import FakeHub
from tests.helpers.cli import llamadesk_command
from tests.helpers.downloads import FILE, REPO, SIZE, SMALL, downloaded, serve_tiny_repo, wait_for
from tests.helpers.hardware import laptop


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    yield from serve_tiny_repo(monkeypatch, tmp_path)


def test_cli_recommend_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["models", "recommend", "--json", "--ctx", "2048"]) == 0
    menu = json.loads(capsys.readouterr().out)
    assert menu["hardware"]["total_ram"] > 0
    recommended = {row["id"]: row for row in menu["models"]}
    assert "smollm2-135m" in recommended  # runs well on any machine that runs the tests
    assert all(row["recommended_quant"] for row in menu["models"])
    assert all(row["context_size"] <= 2048 for row in menu["models"])

    assert main(["models", "list", "--all"]) == 0
    captured = capsys.readouterr()
    assert "Llama 3.3 70B Instruct" in captured.out and "~" in captured.out and "tokens/s" in captured.out
    assert "HF_HUB_OFFLINE" in captured.err  # the suite runs offline: estimates, and a sentence saying why


def test_cli_search_installed_queue_and_remove(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import constants

    from app.cli import main

    # What HF_ENDPOINT does when set before huggingface_hub is imported.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    assert main(["models", "search", "tiny"]) == 0
    assert REPO in capsys.readouterr().out

    assert main(["models", "download", f"{REPO}:Q8_0"]) == 0
    captured = capsys.readouterr()
    assert Path(captured.out.strip()).read_bytes() == SMALL
    assert "Verified (sha256) and installed" in captured.err

    assert main(["models", "installed"]) == 0
    assert f"{REPO}:Q8_0" in capsys.readouterr().out
    assert main(["models", "queue"]) == 0
    assert "done" in capsys.readouterr().out
    assert main(["models", "remove", f"{REPO}:Q8_0"]) == 1  # stdin is not a terminal: needs --yes
    assert "--yes" in capsys.readouterr().err
    assert main(["models", "remove", f"{REPO}:Q8_0", "--yes"]) == 0
    assert "262.1 KB freed" in capsys.readouterr().out
    assert downloaded() == []


def start_download(hub: FakeHub, home: Path, *args: str) -> subprocess.Popen[str]:
    """``llamadesk models ARGS`` in its own process, asking the fake hub, slowly enough to be interrupted."""
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "LLAMADESK_HOME": str(home)}
    env.pop("HF_TOKEN", None)
    hub.faults.throttle_bytes_per_second = 2 * 1024 * 1024
    return subprocess.Popen(
        llamadesk_command("models", *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt_when_a_fifth_is_here(process: subprocess.Popen[str], partial: Path) -> tuple[str, str]:
    try:
        wait_for(lambda: partial.exists() and partial.stat().st_size > SIZE // 5, timeout=60)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return out, err


def test_ctrl_c_pauses_a_download_and_resume_continues_it(hub: FakeHub, llamadesk_home: Path) -> None:
    partial = app_paths().downloads_dir / "testorg__Tiny-Instruct-GGUF" / (FILE + ".part")
    download = start_download(hub, llamadesk_home, "download", f"{REPO}:Q4_K_M")
    out, err = interrupt_when_a_fifth_is_here(download, partial)
    assert download.returncode == 130, err
    assert "Paused with" in err and "run the same command to resume" in err and "Traceback" not in err
    assert out == ""
    (job,) = DownloadQueue().jobs()
    assert job.state == STATE_PAUSED and partial.exists()

    # "models resume" pauses on Ctrl+C too: the job stays paused, its partial kept, and nothing failed.
    kept = partial.stat().st_size
    resume = start_download(hub, llamadesk_home, "resume")
    wait_for(lambda: partial.stat().st_size > kept, timeout=60)
    out, err = interrupt_when_a_fifth_is_here(resume, partial)
    assert resume.returncode == 0, err
    assert "Traceback" not in err and out == ""
    (job,) = DownloadQueue().jobs()
    assert job.state == STATE_PAUSED and 0 < partial.stat().st_size < SIZE


def test_cli_hardware(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["models", "hardware", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["total_ram"] > 0 and figures["memory_bandwidth"] > 0
    assert main(["models", "hardware"]) == 0
    assert "Memory bandwidth:" in capsys.readouterr().out


def test_the_hardware_line_is_the_machine_s_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main
    from app.core.models import hardware

    monkeypatch.setattr(hardware, "probe_hardware", lambda **_options: laptop())
    assert main(["models", "recommend", "--offline", "--ctx", "2048"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line == laptop().summary() + "; planning for a context of 2048 tokens."


def test_recommend_json_after_a_slow_starter_reply_on_the_24_gb_machine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main
    from app.core.files import write_json_atomic
    from app.core.models import hardware
    from app.core.models.measured import speeds_file

    desk = laptop(23_500_000_000, 25_300_000_000, bandwidth=31e9)
    monkeypatch.setattr(hardware, "probe_hardware", lambda **_options: desk)
    assert main(["models", "recommend", "--json", "--offline"]) == 0
    before = json.loads(capsys.readouterr().out)
    # The file: the previous version's record of one 6.5 tokens/s reply of the starter model.
    entry = {"parameters": 134515008, "file_size": 98362432, "tokens_per_second": 6.5, "updated": 1.0}
    write_json_atomic(
        speeds_file(), {hardware.machine_fingerprint(): {"SmolLM2-135M-Instruct.Q4_1.gguf": entry}}
    )
    assert main(["models", "recommend", "--json", "--offline"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert "fingerprint" in after["hardware"]
    ids = [row["id"] for row in after["models"]]
    assert ids == [row["id"] for row in before["models"]] and len(ids) >= 10  # not "two tiny models"
    llama = next(row for row in after["models"] if row["id"] == "llama-3.2-1b")
    assert llama["fit"] == "runs well" and llama["recommended_quant"]
    for row in after["models"]:
        assert row["fit"] == "runs well" and row["recommended_quant"]
        for option in row["options"]:
            assert {"quant", "tokens_per_second", "speed_label"} <= set(option)
        chosen = next(o for o in row["options"] if o["quant"] == row["recommended_quant"])
        assert chosen["speed_label"] in ("fast", "usable")
    # Ordered by what suits this machine: every fast model before every merely usable one.
    words = [row["speed_label"] for row in after["models"]]
    assert words == sorted(words, key=["fast", "usable"].index)

    assert main(["models", "list", "--offline"]) == 0
    table = capsys.readouterr().out
    assert "SPEED" in table and "fast >= 15, usable >= 3" in table
