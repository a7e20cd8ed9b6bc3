"""``jumpsync up``: the whole thing on one machine, for a first run and for demos.

| module | what | interface |
|---|---|---|
| ``command`` | the ``up`` command; client commands adopting a running ``up`` | ``up``, ``adopt_running_up`` |
| ``supervisor`` | starts the broker, simulator, workers, beat and Flower; prints the first syncs | ``run_up`` |
| ``state`` | the pid file held locked while ``up`` runs, the settings file it leaves for other commands | ``PidFile``, ``UpRecord``, ``adopt_running_up`` |
| ``watchdog`` | ends what ``up`` started once ``up`` is gone, however it ended | ``python -m cli.up.watchdog FD [GRACE]`` |

``python -m cli.up.watchdog`` imports this file, and must start fast: keep it free of imports.
"""
