"""Benchmarks and the self-test (``llamadesk bench``, ``history bench``, ``summarize --bench``, ``--self-test``):
they measure the app from outside, so they may use Qt and every part of core; nothing in core imports them."""
