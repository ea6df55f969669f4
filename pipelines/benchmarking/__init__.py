"""Benchmarks with a stable interface: ``airsight bench forecast`` and ``airsight bench personalize``.

Each module measures Airsight's models on any data set in the managed service's layout, the
same way every time, beside open-source peers run by the same protocol code, and writes one
JSON result. The scripts in ``benchmarks/`` run these commands on the shared data sets and
turn the results into the README's tables. Modules expose ``add_arguments(parser)`` and
``run(args) -> int`` and import nothing heavy at top level: the CLI imports them at start-up.
"""
