"""The ``jumpsync`` command line: one module per command group, registered in ``cli.main``.

Imported by ``python -m cli.up.watchdog`` too, which must start fast: keep this file free of imports.
"""
