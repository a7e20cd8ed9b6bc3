"""The command line's start-up, as far as the garbage collector is concerned; imported by cli.main first.

The command line's imports (typer, rich, pydantic and the settings, SQLAlchemy) make some 100k objects that live
as long as the process, and CPython's cyclic garbage collector traversed them again and again while they were
being made, finding nothing: 20-40ms of every command. Importing this module pauses the collector;
``imported`` turns it back on (cli.main calls it once its imports are done, so that a test importing the
module keeps its collector), and ``frozen`` moves what exists into the permanent generation (the entry point
calls it, before the command runs and imports the database layer).
"""

from __future__ import annotations

import gc

_COLLECTING = gc.isenabled()
gc.disable()


def imported() -> None:
    if _COLLECTING:
        gc.enable()


def frozen() -> None:
    gc.freeze()
