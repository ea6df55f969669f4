"""Data preparation: the first two steps of both DAGs.

``staging`` reads raw files into a staging area, ``validation`` runs the Great Expectations
suites over them (stage by stage, with the quarantine), and ``steps`` holds the DAG steps
``validate_schema`` and ``import_data`` that tie them to ``pipelines.preparation.importing`` (alignment,
aggregation, filling, event filtering) and write the snapshot keyed by ``as_of``.
"""
