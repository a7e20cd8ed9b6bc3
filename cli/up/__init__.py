"""``jumpsync up``: the whole thing on one machine, for a first run and for demos.

| module | what | interface |
|---|---|---|
| ``command`` | the ``up`` command; client commands adopting a running ``up`` | ``up``, ``adopt_running_up`` |
| ``supervisor`` | starts the broker, workers, beat and Flower; prints the first syncs | ``run_up`` |
| ``recovery`` | the runs an interrupted earlier ``up`` left active failed; the first syncs sent (all, on its own broker; those whose last failed, on another) | ``abandon_runs_of_earlier_up``, ``trigger_first_syncs``, ``trigger_unfinished`` |
| ``listeners`` | the servers' loopback ports; ready when the child itself listens | ``choose_port``, ``wait_until_serving`` |
| ``metrics`` | one /metrics for both workers (``JUMPSYNC_METRICS_PORT``), nothing left behind | ``worker_environments`` |
| ``state`` | the locked pid file; the settings file other commands adopt | ``PidFile``, ``adopt_settings`` |
| ``watchdog`` | ends what ``up`` started once ``up`` is gone, however it ended | ``python -m cli.up.watchdog`` |

``python -m cli.up.watchdog`` imports this file, and must start fast: keep it free of imports.
"""
