"""``llamadesk bench --draft``: prompt-lookup drafting (app.core.llm.drafting) against plain decoding.

Each task runs greedy, plain and drafted in turn (``REPEATS`` times each, interleaved so a busy spell of the
machine hits both), on each real model: the starter model (SmolLM2 135M) and Gemma 3 270M. The figure is the
generation speed (tokens per second from the first token to the last; the prompt is cached after the first run,
so its evaluation is left out of every figure), the speedup drafted / plain, the share of drafted tokens the model
kept, and whether the two replies were the same tokens.

Tasks: "rewrite" gives a ~60-line Python function and asks for it back whole with a variable renamed and type
hints added (the reply copies the prompt); "quote" gives a passage and asks for the sentence that says something,
word for word; "chat" is free writing that copies nothing, to see what drafting costs where it cannot pay.

Measurements behind ``ReplyOptions.draft = "auto"`` (drafting on for every reply without a grammar or tools),
2026-12-07 on a 2-core AMD EPYC (AVX-512) shared with other work, so +-20% noise; speedup drafted / plain,
greedy, generation tokens/s:

    threads 1:              rewrite  quote  chat
      SmolLM2 135M           1.08x   0.99x  0.90x   (kept 439/592, 90/114, 0/20)
      Gemma 3 270M           1.19x   1.49x  1.32x   (kept 610/738, 110/110, 178/187: the base model repeats)
    threads 2 (busier; the first drafter: 2-token matches, no pause after misses):
      SmolLM2 135M           0.85x   1.91x  0.92x   (the rewrite run shared its cores with a test run)
      Gemma 3 270M           1.99x   2.16x  1.21x

SmolLM2's greedy "rewrite" is not a copy: its plain reply (449 tokens) rewrites the function into other code.
Replaying it offline, a drafter that knew which drafted tokens would be kept gains at most ~1.21x at SmolLM2's
cost of a batch (2 rows ~2.2x one, 4 rows ~2.9x, then ~0.44x per row; 2 threads), and ours 0.96x. Its drafted
reply parts from the plain one at a near-tie (token ~25), and the bench's figure measures whichever text followed:
a reply that falls into repeating itself drafts far better (ceiling ~1.65x), so the rewrite's speedup on SmolLM2
moves between ~1.1x and ~1.35x from run to run. A cost-aware drafter (draft length from the expected kept tokens
per unit of batch cost, acceptance counted per match length) replayed better (rewrite 0.96x -> 1.02x on the
plain reply, Gemma 1.94x -> 2.45x), but in a quiet live run on SmolLM2 (2026-12-08, 2 threads) its rewrite
wrote another text after the near-tie and gained 1.07x against this drafter's 1.34x (quote 1.44x against 1.32x),
so it was not kept.

Why not more: on a CPU these models are compute-bound, so a batch costs nearly its rows' worth. With logits for
every row (what verification needs), 2 rows cost ~2.3x one row for SmolLM2 and ~3.5x for Gemma, 8 rows ~4.5x
and ~5.7x (1 thread); Gemma's 262k-token output layer alone runs once per row. Drafting pays where drafts are
taken many at a time (quotes, Gemma's copies) and costs up to ~10% where they are not (SmolLM2 chat). It stays on
by default in every mode and for the API: the losses are small and bounded (drafts need a 3-token match and pause
after misses), the gains on copying work are larger; ``llamadesk serve --draft off`` turns it off for a server,
and a caller may set ``ReplyOptions(draft="off")`` for free writing.

Exact identity at temperature 0: llama.cpp's CPU matrix kernels do not give a row of a batch the same float
results as the same token evaluated alone on every CPU (here: Gemma's Q4_K weights are repacked into interleaved
blocks multiplied four rows at a time (loading with ``use_extra_bufts`` off removes that part), and rows past
the 5th (SmolLM2) or 9th (Gemma) of a batch differ whatever the batch size and thread count, most likely
llamafile's tinyBLAS taking other tiles there; logits differ by up to ~1.0, flash attention makes every row differ). The verification is exact
against the batched logits; the replies are the same tokens wherever no near-tie between the two best tokens
falls inside that difference, which the "same" column checks.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.core.llm.bindings import cached_tokens
from app.core.llm.context import ChatMessage
from app.core.llm.engine import Engine, Reply
from app.core.llm.load_options import LoadOptions
from app.core.llm.sampling import ReplyOptions
from app.core.modes import SamplingOptions

REPEATS = 2
SPEEDUP_GOAL = 1.5  # on the rewrite task

_FUNCTION = '''def summarize_orders(orders, discount, tax_rate):
    """Totals per customer, with the discount and tax applied."""
    totals = {}
    counts = {}
    largest = {}
    for order in orders:
        customer = order["customer"]
        amount = order["amount"]
        if customer not in totals:
            totals[customer] = 0.0
            counts[customer] = 0
            largest[customer] = 0.0
        totals[customer] += amount
        counts[customer] += 1
        if amount > largest[customer]:
            largest[customer] = amount
    report = []
    for customer in sorted(totals):
        subtotal = totals[customer]
        if subtotal > 100:
            subtotal = subtotal * (1 - discount)
        tax = subtotal * tax_rate
        total = subtotal + tax
        average = totals[customer] / counts[customer]
        line = {
            "customer": customer,
            "orders": counts[customer],
            "subtotal": round(subtotal, 2),
            "tax": round(tax, 2),
            "total": round(total, 2),
            "average": round(average, 2),
            "largest": round(largest[customer], 2),
        }
        report.append(line)
    best = None
    for line in report:
        if best is None or line["total"] > best["total"]:
            best = line
    worst = None
    for line in report:
        if worst is None or line["total"] < worst["total"]:
            worst = line
    grand_total = 0.0
    for line in report:
        grand_total += line["total"]
    summary = {
        "customers": len(report),
        "grand_total": round(grand_total, 2),
        "best": best["customer"] if best else None,
        "worst": worst["customer"] if worst else None,
    }
    for line in report:
        share = line["total"] / grand_total if grand_total else 0.0
        line["share"] = round(share, 4)
    return report, summary
'''

_PASSAGE = (
    "The lighthouse at Harrow Point was built in 1871 from granite quarried on the island itself. "
    "Its first keeper, Elias Brand, kept a log of every ship that passed for thirty-one years. "
    "In 1903 a storm cracked the lantern room, and the light was dark for eleven nights while glass was brought "
    "from the mainland. "
    "The light was converted from oil to electricity in 1926, when a cable was laid across the strait. "
    "Automation came in 1989, and the last keeper, Mary Tolland, left the island that autumn. "
    "Today the tower is a museum, and its lens, made in Paris, still turns every night."
)

TASKS: dict[str, list[ChatMessage]] = {
    "rewrite": [
        {
            "role": "user",
            "content": "Rename the variable `totals` to `spent` in this Python function and add type hints. "
            "Output the whole code, nothing else.\n\n```python\n" + _FUNCTION + "```",
        }
    ],
    "quote": [
        {
            "role": "user",
            "content": "Read this passage:\n\n"
            + _PASSAGE
            + "\n\nQuote, word for word, the sentence that says "
            "when the light was converted to electricity, then the sentence about the storm.",
        }
    ],
    "chat": [{"role": "user", "content": "Write a short story about a fox who learns to play the violin."}],
}
MAX_TOKENS = {"rewrite": 700, "quote": 120, "chat": 200}


@dataclass
class TaskResult:
    model: str
    task: str
    plain_tokens_per_second: list[float] = field(default_factory=list)
    drafted_tokens_per_second: list[float] = field(default_factory=list)
    generated_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    identical: bool = True
    # Where the drafted reply first parted from the plain one (its token index), and how far apart the plain
    # decoding's two best tokens were there (log-probabilities): a near-tie says float differences decided.
    parted_at: int | None = None
    margin_there: float | None = None

    @property
    def plain(self) -> float:
        return statistics.median(self.plain_tokens_per_second) if self.plain_tokens_per_second else 0.0

    @property
    def drafted(self) -> float:
        return statistics.median(self.drafted_tokens_per_second) if self.drafted_tokens_per_second else 0.0

    @property
    def speedup(self) -> float:
        return self.drafted / self.plain if self.plain else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "plain": self.plain,
            "drafted": self.drafted,
            "speedup": self.speedup,
            "acceptance_rate": self.acceptance_rate,
        }


@dataclass
class DraftingResult:
    tasks: list[TaskResult]
    repeats: int = REPEATS

    def as_dict(self) -> dict[str, object]:
        return {
            "tasks": [task.as_dict() for task in self.tasks],
            "repeats": self.repeats,
            "speedup_goal": SPEEDUP_GOAL,
        }

    def report(self) -> str:
        lines = [
            "Prompt-lookup drafting vs plain decoding (greedy; generation tokens/s, median of "
            f"{self.repeats} runs each, interleaved)",
            f"{'model':<34} {'task':<8} {'tokens':>6} {'plain':>8} {'drafted':>8} {'speedup':>8} "
            f"{'kept':>11} {'same':>5}",
        ]
        for task in self.tasks:
            kept = f"{task.accepted_tokens}/{task.drafted_tokens}"
            lines.append(
                f"{task.model:<34} {task.task:<8} {task.generated_tokens:>6} {task.plain:>8.1f} "
                f"{task.drafted:>8.1f} {task.speedup:>7.2f}x {kept:>11} {'yes' if task.identical else 'NO':>5}"
            )
        for task in self.tasks:
            if task.parted_at is not None and task.margin_there is not None:
                lines.append(
                    f"{task.model} {task.task}: the replies part at token {task.parted_at}, where the plain "
                    f"decoding's two best tokens are {task.margin_there:.3f} apart in log-probability"
                )
        rewrites = [task.speedup for task in self.tasks if task.task == "rewrite"]
        if rewrites:
            lines.append(
                f"rewrite speedup: {', '.join(f'{s:.2f}x' for s in rewrites)} (goal {SPEEDUP_GOAL:.1f}x); "
                "'kept': drafted tokens the model's own choice confirmed; 'same': the drafted reply is the "
                "plain one token for token"
            )
        return "\n".join(lines)


def _run(engine: Engine, messages: list[ChatMessage], max_tokens: int, draft: str) -> Reply:
    sampling = SamplingOptions(temperature=0.0, max_tokens=max_tokens)
    reply = engine.chat(
        messages, sampling, options=ReplyOptions(draft="lookup" if draft == "lookup" else "off")
    )
    reply.collect()
    return reply


def measure_task(
    engine: Engine, model: str, task: str, repeats: int = REPEATS, max_tokens: int | None = None
) -> TaskResult:
    """Plain and drafted runs of ``task`` on the loaded model, interleaved; the prompt is evaluated once before."""
    messages = TASKS[task]
    limit = max_tokens or MAX_TOKENS[task]
    result = TaskResult(model=model, task=task)
    _run(engine, messages, 1, "off")  # the prompt into the cache, so no timed run pays for it
    prompt = engine.tokenize_messages(messages)[0]
    for _ in range(repeats):
        plain = _run(engine, messages, limit, "off")
        plain_tokens = cached_tokens(engine.llama)[len(prompt) :]
        drafted = _run(engine, messages, limit, "lookup")
        drafted_tokens = cached_tokens(engine.llama)[len(prompt) :]
        result.plain_tokens_per_second.append(plain.stats.tokens_per_second)
        result.drafted_tokens_per_second.append(drafted.stats.tokens_per_second)
        if drafted.text != plain.text and result.identical:
            result.identical = False
            result.parted_at, result.margin_there = _parting(engine, prompt, plain_tokens, drafted_tokens)
        result.generated_tokens = drafted.stats.generated_tokens
        result.drafted_tokens = drafted.stats.drafted_tokens
        result.accepted_tokens = drafted.stats.accepted_tokens
    return result


def _parting(
    engine: Engine, prompt: list[int], plain: list[int], drafted: list[int]
) -> tuple[int, float | None]:
    """The first token where two replies differ (of the tokens the cache held after each: all but the last), and
    the gap between the plain decoding's two best tokens there."""
    common = 0
    while common < min(len(plain), len(drafted)) and plain[common] == drafted[common]:
        common += 1
    there = engine.complete(
        prompt + plain[:common],
        SamplingOptions(temperature=0.0, max_tokens=1),
        options=ReplyOptions(top_logprobs=2, draft="off"),
    )
    there.collect()
    top = there.logprobs[0].top if there.logprobs else ()
    return common, (top[0][1] - top[1][1]) if len(top) >= 2 else None


def run_drafting_benchmark(
    models: Sequence[Path] | None = None,
    tasks: Sequence[str] = tuple(TASKS),
    repeats: int = REPEATS,
    max_tokens: int | None = None,
    progress: Callable[[str], None] | None = None,
    threads: int = 0,
) -> DraftingResult:
    """Every task on every model (default: the two real models, ``app.bench.predict.real_models``); ``threads``
    0: the engine's default (a thread per physical core)."""
    if models is None:
        from app.bench.predict import real_models

        models = real_models()
    say = progress or (lambda _line: None)
    results: list[TaskResult] = []
    for path in models:
        engine = Engine()
        engine.load(path, LoadOptions(context_size=4096, threads=threads))
        try:
            for task in tasks:
                say(f"{path.stem}: {task} ...")
                results.append(measure_task(engine, path.stem, task, repeats, max_tokens))
        finally:
            engine.unload()
    return DraftingResult(results, repeats)
