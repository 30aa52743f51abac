"""Measured speeds on disk: samples, the file an older version wrote, and how busy the machine was."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from app.core.files import write_json_atomic
from app.core.models.hardware import machine_fingerprint
from app.core.models.measured import (
    BUSY_SHARE_LIMIT,
    MAX_SAMPLES,
    CpuWindow,
    SampleCondition,
    measured_speeds,
    record_measured_speed,
    speeds_file,
)
from app.core.models.speed import MAX_CORRECTION, predict_speed

LLAMA_1B_Q8 = 1_313_000_000


def test_a_file_written_by_the_previous_version_is_read_each_entry_as_one_sample() -> None:
    # Exactly what record_measured_speed wrote before samples were kept (one averaged figure per file).
    old = {
        machine_fingerprint(): {
            "SmolLM2-135M-Instruct.Q4_1.gguf": {
                "parameters": 134515008,
                "file_size": 98362432,
                "tokens_per_second": 6.5,
                "updated": 1796120000.5,
            },
            "bartowski/Other:Q4_K_M": {"parameters": None, "file_size": 1000, "tokens_per_second": 50.0},
        },
        "another-machine": {"x.gguf": {"parameters": None, "file_size": 5, "tokens_per_second": 1.0}},
    }
    write_json_atomic(speeds_file(), old)
    records = {record.key: record for record in measured_speeds()}
    assert set(records) == {"SmolLM2-135M-Instruct.Q4_1.gguf", "bartowski/Other:Q4_K_M"}
    smol = records["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert smol.tokens_per_second == 6.5 and smol.updated == 1796120000.5
    assert len(smol.samples) == 1 and smol.condition is SampleCondition.UNKNOWN
    # The next quiet reply joins it as a second sample, and being quiet it is the one trusted.
    record_measured_speed("/x/SmolLM2-135M-Instruct.Q4_1.gguf", 134515008, 98362432, 100.0, busy_share=0.02)
    smol = next(r for r in measured_speeds() if r.key == "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert [s.tokens_per_second for s in smol.samples] == [6.5, 100.0]
    assert smol.tokens_per_second == 100.0 and smol.condition is SampleCondition.QUIET
    # The figure an older version reads is still at its place, and the other machine's entries are kept.
    data = json.loads(speeds_file().read_text(encoding="utf-8"))
    assert data[machine_fingerprint()]["SmolLM2-135M-Instruct.Q4_1.gguf"]["tokens_per_second"] == 100.0
    assert "another-machine" in data


def test_only_the_last_samples_are_kept_and_a_new_file_size_starts_again() -> None:
    for index in range(MAX_SAMPLES + 3):
        record_measured_speed("m.gguf", None, 1000, 10.0 + index)
    (record,) = measured_speeds()
    assert len(record.samples) == MAX_SAMPLES and record.samples[0].tokens_per_second == 13.0
    record_measured_speed("m.gguf", None, 2000, 5.0)  # the file was replaced by another of that name
    (record,) = measured_speeds()
    assert len(record.samples) == 1 and record.file_size == 2000


def test_other_processes_holding_the_cpu_make_a_busy_sample() -> None:
    burn = "import time\nend = time.perf_counter() + 1.5\nwhile time.perf_counter() < end: pass\n"
    window = CpuWindow.start()
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(window.cores)]
    for burner in burners:
        burner.wait(timeout=60)
    share = window.busy_share()
    assert share is not None and share > BUSY_SHARE_LIMIT
    # This process's own work is not someone else's: a busy loop here leaves the share where others put it.
    own = CpuWindow.start()
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:
        pass
    own_share = own.busy_share()
    assert own_share is not None and own_share < 1.0


def test_a_real_reply_of_the_test_model_is_recorded_and_does_not_move_a_1b_prediction(
    engine: object,
) -> None:
    from app.core.llm.engine import Engine
    from app.core.modes import SamplingOptions

    assert isinstance(engine, Engine) and engine.model is not None
    window = CpuWindow.start()
    reply = engine.chat(
        [{"role": "user", "content": "Tell me about lighthouses."}],
        SamplingOptions(temperature=0.0, max_tokens=24),
    )
    reply.collect()
    share = window.busy_share()
    model = engine.model
    record_measured_speed(
        model.path, model.parameters, model.file_size, reply.stats.tokens_per_second, busy_share=share
    )
    (record,) = measured_speeds()
    print(f"\n{model.name} measured {record.tokens_per_second:.1f} tokens/s, other processes held {share}")
    assert record.key == model.path.name and record.samples[0].busy_share == share
    bandwidth = 31e9
    alone = predict_speed(LLAMA_1B_Q8, bandwidth).tokens_per_second
    after = predict_speed(
        LLAMA_1B_Q8, bandwidth, [record], key="Llama-3.2-1B-Instruct-Q8_0.gguf"
    ).tokens_per_second
    assert alone is not None and after is not None
    assert 1 / MAX_CORRECTION <= after / alone <= MAX_CORRECTION


@pytest.mark.parametrize("share", [None, 0.0, 0.25, 0.26, 1.0])
def test_sample_conditions(share: float | None) -> None:
    record_measured_speed("c.gguf", None, 10, 1.0, busy_share=share)
    (record,) = measured_speeds()
    expected = (
        SampleCondition.UNKNOWN
        if share is None
        else SampleCondition.BUSY
        if share > BUSY_SHARE_LIMIT
        else SampleCondition.QUIET
    )
    assert record.condition is expected and record.busy == (expected is SampleCondition.BUSY)
