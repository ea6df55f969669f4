"""Training runs and the model registry, shared by both engines.

``runs`` is what both DAGs' training steps share (run folders, the run's options, MLflow runs,
selection of the winner, the gate's decision and ``finish``); ``registry`` is MLflow's tracking
and registry (champion and challenger aliases, decisions as tags, the gate's lock); ``pyfunc``
logs and loads models as MLflow pyfunc models (with the digest checked before unpickling); and
``publish`` writes versioned outputs behind an atomic ``latest`` pointer.
"""
