"""Benchmarks: the toolkit against hand-written redis-py baselines on the same workload.

Run ``bash scripts/bench`` (or ``python -m bench``); ``--smoke`` runs tiny sizes, ``--json``
prints machine-readable results on stdout. Every run starts its own private redis-server on an
ephemeral loopback port. Modules: ``workload`` (the shared actions, worker and helpers),
``ours`` (toolkit runs), ``raw`` (baselines), ``serve`` (worker subprocesses), ``memory``
(RSS over many actions), ``suite`` (scenarios, runs and medians), ``report`` (table and JSON).
"""
