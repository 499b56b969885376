"""The seeded, vectorized simulator of a web shop: used for the demo, the tests and the benchmarks.

``shop.simulate`` writes the landing files the platform ingests plus the ground truth it can be scored
against; ``oracle.oracle_expectations`` turns that ground truth into the best possible forecast. By
concern: ``config`` (what to simulate), ``seasonality`` and ``process`` (the generative process),
``regime_lines`` and ``regimes`` (what real logs look like), ``text``, ``landing``, ``dirt`` and ``export``
(rendering the files and the injected dirt), ``truth`` (ground truth, future, meta.json) and ``oracle``.
The simulator imports no Dagster.
"""
