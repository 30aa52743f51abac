"""The prompt evaluated in batches before the reply: progress after each batch, a stop between batches, and the
same reply and speed as without the batches (real model, real llama.cpp); the time left estimated from the
batches timed so far, and whether other programs are using the CPU (``app.core.llm.prompt_progress``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine
from app.core.llm.load_options import LoadOptions
from app.core.llm.prompt_progress import CpuShare, CpuWatch, PromptPace, describe_time_left
from app.core.modes import SamplingOptions

BATCH = 64
GREEDY = SamplingOptions(temperature=0.0, max_tokens=8)


@pytest.fixture(scope="module")
def small_batches(model_path: Path) -> Iterator[Engine]:
    """An engine whose prompt batches are small, so a short prompt takes several."""
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=2048, batch_size=BATCH))
    yield engine
    engine.unload()


def _question(words: int) -> list[ChatMessage]:
    text = " ".join(f"lighthouse{index % 7} keeper" for index in range(words // 2))
    return [{"role": "user", "content": f"{text}\nWhat is this text about? Answer in one word."}]


def test_progress_is_reported_after_each_batch_in_order_ending_at_the_total(small_batches: Engine) -> None:
    small_batches.clear_cache()
    reports: list[tuple[int, int]] = []
    reply = small_batches.chat(_question(300), GREEDY, prompt_progress=lambda d, t: reports.append((d, t)))
    text = reply.collect()
    total = reply.stats.evaluated_tokens
    print(f"{total} prompt tokens in batches of {BATCH}: {len(reports)} reports, reply {text!r}")
    assert total > 3 * BATCH
    assert len(reports) >= total // BATCH
    assert all(t == total for _, t in reports)
    done = [d for d, _ in reports]
    assert done == sorted(set(done)), "each report further than the one before"
    assert all(d % BATCH == 0 for d in done[:-2])
    assert reports[-1] == (total, total)


def test_a_stop_between_batches_ends_the_reply_before_its_first_word(small_batches: Engine) -> None:
    small_batches.clear_cache()
    cancel = threading.Event()
    reports: list[int] = []

    def stop_after_first(done: int, _total: int) -> None:
        reports.append(done)
        cancel.set()

    reply = small_batches.chat(_question(300), GREEDY, cancel=cancel, prompt_progress=stop_after_first)
    assert reply.collect() == ""
    assert reply.stats.finish_reason == "cancelled"
    assert reports == [BATCH], "no batch is evaluated after the stop"


def test_the_whole_prompt_is_evaluated_with_and_without_the_batches(small_batches: Engine) -> None:
    """Batches of another size reach llama.cpp's kernels in other shapes, whose float sums may round apart, so a
    tiny model's greedy words may differ in a near tie: what must hold is that every prompt token is evaluated
    and a reply follows, either way."""
    replies = []
    for in_batches in (False, True):
        small_batches.prompt_in_batches = in_batches
        small_batches.clear_cache()
        replies.append(small_batches.chat(_question(300), GREEDY))
        replies[-1].collect()
    small_batches.prompt_in_batches = True
    whole, batched = (reply.stats for reply in replies)
    assert (
        whole.prompt_tokens
        == batched.prompt_tokens
        == whole.evaluated_tokens
        == batched.evaluated_tokens
        > 300
    )
    assert whole.generated_tokens > 0 and batched.generated_tokens > 0


@pytest.mark.slow
def test_prompt_speed_is_the_same_with_and_without_the_batches(model_path: Path) -> None:
    """A 600-token prompt (two of the app's batches), evaluated each way in turn (the better of two each)."""
    engine = Engine()
    engine.load(model_path, LoadOptions(context_size=2048))
    try:
        speeds: dict[bool, list[float]] = {False: [], True: []}
        for _round in range(2):
            for in_batches in (False, True):
                engine.prompt_in_batches = in_batches
                engine.clear_cache()
                started = time.perf_counter()
                reply = engine.chat(_question(400), SamplingOptions(temperature=0.0, max_tokens=1))
                reply.collect()
                elapsed = time.perf_counter() - started
                assert 520 <= reply.stats.evaluated_tokens <= 900
                speeds[in_batches].append(reply.stats.evaluated_tokens / elapsed)
        without, with_batches = max(speeds[False]), max(speeds[True])
        print(
            f"prompt of {reply.stats.evaluated_tokens} tokens: {without:.0f} tokens/s without the batch loop, "
            f"{with_batches:.0f} tokens/s with it ({with_batches / without:.2f}x)"
        )
        # The same within noise when quiet (the figure printed); a busy shared machine moves each run by 10-20%.
        assert with_batches >= 0.75 * without
    finally:
        engine.unload()


# -- the time left ---------------------------------------------------------------------------------------------


def test_no_time_left_before_a_batch_is_timed_then_the_rest_at_the_measured_speed() -> None:
    pace = PromptPace(clock=lambda: 100.0)
    assert pace.seconds_left(now=0.0) is None
    pace.read(512, 4096, at=10.0)  # the first batch: when it started is unknown
    assert pace.seconds_left(now=10.0) is None and not pace.measured
    pace.read(1024, 4096, at=12.0)  # 512 tokens in 2 s
    assert pace.tokens_per_second == pytest.approx(256)
    assert pace.seconds_left(now=12.0) == pytest.approx(3072 / 256)
    # Between reports it counts down, never below nothing.
    assert pace.seconds_left(now=15.0) == pytest.approx(3072 / 256 - 3)
    assert pace.seconds_left(now=60.0) == 0.0
    pace.read(4096, 4096, at=24.0)
    assert pace.seconds_left(now=24.0) == 0.0


def test_batches_that_slow_down_as_the_prompt_grows_are_projected_further() -> None:
    """Each token attends to all before it: a batch late in a long prompt costs more than an early one."""
    pace = PromptPace()
    at = 0.0
    pace.read(100, 1000, at=at)
    for done in range(200, 600, 100):
        at += 0.1 * (1 + done / 500)  # seconds per batch, growing with the position
        pace.read(done, 1000, at=at)
    flat = (1000 - 500) / pace.tokens_per_second  # type: ignore[operator]
    true_rest = sum(0.1 * (1 + done / 500) for done in range(600, 1100, 100))
    estimate = pace.seconds_left(now=at)
    assert estimate is not None
    print(f"rest: {true_rest:.2f} s, estimated {estimate:.2f} s, at the average speed {flat:.2f} s")
    assert flat < estimate and abs(estimate - true_rest) < abs(flat - true_rest)
    assert estimate == pytest.approx(true_rest, rel=0.1)


def test_time_left_reads_as_a_person_says_it() -> None:
    assert describe_time_left(0.4) == describe_time_left(4.9) == "a few seconds left"
    assert describe_time_left(12.4) == "about 12 s left"
    assert describe_time_left(23) == "about 25 s left"
    assert describe_time_left(58) == describe_time_left(80) == "about 1 min left"
    assert describe_time_left(95) == "about 2 min left"
    assert describe_time_left(3 * 3600 + 700) == "about 3 h 10 min left"
    assert describe_time_left(2 * 3600) == "about 2 h left"


def test_the_time_left_of_a_real_prompt_is_near_what_it_took(small_batches: Engine) -> None:
    """Halfway through a real prompt, the estimate from the batches so far against the time the rest took."""
    small_batches.clear_cache()
    reports: list[tuple[int, int, float]] = []
    reply = small_batches.chat(
        _question(600),
        SamplingOptions(temperature=0.0, max_tokens=1),
        prompt_progress=lambda d, t: reports.append((d, t, time.monotonic())),
    )
    reply.collect()
    total = reply.stats.evaluated_tokens
    batches = [r for r in reports if r[0] < total]  # the last report comes with the first token
    assert len(batches) >= 8
    pace = PromptPace()
    half = len(batches) // 2
    for done, all_tokens, at in batches[: half + 1]:
        pace.read(done, all_tokens, at=at)
    estimate = pace.seconds_left(now=batches[half][2])
    took = batches[-1][2] - batches[half][2]
    done_then, last_done = batches[half][0], batches[-1][0]
    assert estimate is not None
    estimate *= (last_done - done_then) / (total - done_then)  # to the last batch, as ``took`` is
    print(
        f"{total} tokens in {len(batches)} batches; from {done_then}: estimated {estimate:.2f} s, took {took:.2f} s"
    )
    # A shared machine's other work moves single batches a lot: within a factor of four, or half a second.
    assert took / 4 - 0.5 <= estimate <= took * 4 + 0.5


# -- other programs on the CPU ---------------------------------------------------------------------------------


def test_other_programs_count_as_busy_from_half_a_cpu_or_a_quarter_of_what_is_left_free() -> None:
    assert CpuShare(cpus=2, own=2.0, others=0.6, seconds=3).others_busy
    assert not CpuShare(cpus=2, own=2.0, others=0.3, seconds=3).others_busy
    assert CpuShare(cpus=1, own=0.5, others=0.5, seconds=3).others_busy
    assert not CpuShare(cpus=16, own=4.0, others=2.0, seconds=3).others_busy  # 12 CPUs were free
    assert CpuShare(cpus=16, own=4.0, others=3.5, seconds=3).others_busy


def _share_over(watch: CpuWatch, seconds: float) -> CpuShare:
    deadline = time.monotonic() + seconds
    share = None
    while time.monotonic() < deadline or share is None or share.seconds < 1.0:
        time.sleep(0.1)
        share = watch.share()
    return share


def test_a_program_spinning_on_the_cpu_makes_it_busy() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started
        share = _share_over(CpuWatch(), 1.5)
    finally:
        spinner.kill()
        spinner.wait()
    print(share)
    assert share.others >= 0.7
    assert share.others_busy


def test_this_programs_own_work_is_counted_as_its_own() -> None:
    """This process spins a CPU itself: that is its own work, not other programs' (whether the rest of a shared
    machine is quiet is not this test's to know; the thresholds are checked on numbers above)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinning = threading.Thread(target=spin, daemon=True)
    spinning.start()
    try:
        share = _share_over(CpuWatch(), 1.5)
    finally:
        stop.set()
        spinning.join()
    print(share)
    assert share.own >= 0.3, "this process's own spinning is its own"
    assert share.others <= share.cpus - share.own + 0.05  # what it spent is never also counted as others'
