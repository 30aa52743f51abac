"""``llamadesk bench --library`` on a few of its questions: every figure measured, and each retrieval mode finds
something the others are compared with."""

from __future__ import annotations

from pathlib import Path

from app.bench.library import QUESTIONS, corpus_modules, recall, run_library_benchmark


def test_recall_counts_a_question_found_when_a_module_it_is_about_is_in_the_top_five() -> None:
    questions = [("q1", {"csv"}), ("q2", {"zipfile", "tarfile"})]
    assert recall([["json", "csv"], ["a", "b", "c", "d", "e", "tarfile"]], questions) == 0.5


def test_the_benchmark_measures_every_figure(embedding_model_path: Path) -> None:
    questions = QUESTIONS[:6]
    result = run_library_benchmark(
        embedding_model_path, search_passages=3_000, questions=questions, long_text_pages=10
    )
    print(result.report())
    assert result.documents == len(corpus_modules(questions)) and result.passages > result.documents
    assert result.questions == 6
    for figure in (result.recall_words, result.recall_meaning, result.recall_hybrid):
        assert 0.0 <= figure <= 1.0
    assert result.recall_hybrid > 0  # paraphrased questions still find their documents
    assert result.passages_per_second > 0 and result.embedding_tokens_per_second > 0
    assert 0 < result.search_p50_ms <= result.search_p95_ms
    assert result.reindex_files == 150 and result.reindex_one_changed_seconds > 0
    assert (
        result.long_text_pages == 10
        and result.long_text_passages > 10
        and result.long_text_passages_per_second > 0
    )
    assert result.gui_worst_gap_ms > 0 and result.peak_memory_mb > 0
    assert "recall@5" in result.report()
