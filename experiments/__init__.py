"""Research drivers and probes: measurements of the project, not part of the shipped tool.

Nothing in ``ssfnet/``, ``train/``, ``demo/`` or ``app.py`` imports this package; it may import all
of them. Each module runs as ``python -m experiments.NAME`` from the repository root:

- ``compare``: equal-budget comparisons through the trainer (the CPU race, the paper's Table 2).
- ``simulate_loop``: the correction loop with simulated annotators; ``pool_loops`` pools its repeats.
- ``screenshot``: the README's screenshot of the app.
- ``profile_edits``: the time of the app's edits, end to end and in parts.
- ``probe_hardening``: kill -9 loops against the writers and tampered checkpoints.
- ``probe_memory``: the app's peak memory per hostile upload and what stays.
"""
