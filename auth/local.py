"""What ``requested_by`` records for the local entry points: ``cli:<login>`` and ``python:<login>``.

Whoever runs the command line or imports ``jumpsync.api`` has the config file and the database, so is trusted;
what is recorded is the operating system's login name, never text the caller chose (a request may say on whose
behalf it is asked, in ``on_behalf_of``). A token's requester is ``auth.scopes.Principal.requester``.
"""

from __future__ import annotations

import getpass


def login_name() -> str:
    """The OS login name; ``unknown`` in the containers that have none."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001  (KeyError or OSError when there is no passwd entry nor LOGNAME)
        return "unknown"


def cli_requester() -> str:
    return f"cli:{login_name()}"


def python_requester() -> str:
    return f"python:{login_name()}"
