"""Starting Airsight: ``demo`` (every DAG once with ``dag.test()``), ``airflow_local`` (``make airflow``:
Airflow standalone on PostgreSQL) and ``deploy`` (``airsight deploy ROLE``: one role of the scale-out
topology per command, from one source of settings)."""
