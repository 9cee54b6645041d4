"""Evaluation: zero-shot classification, image-text retrieval and linear probes, benchmark suites, reports.

Each evaluator module (``zeroshot``, ``retrieval``, ``linear_probe``, ``suite``) has a frozen config dataclass
and ``run(pipeline, cfg) -> dict[str, float]``; ``run_detailed`` returns the full result (confusion matrix,
ranks, embeddings) that ``report`` renders. ``runner.evaluate_and_report`` runs a suite and writes
``results.json`` and ``report.html``; ``zeroshot.make_zeroshot_hook_for`` is the trainer's in-training check.
"""
