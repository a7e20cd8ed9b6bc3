"""What ``requested_by`` records for the local entry points: ``cli:<login>`` and ``python:<login>``.

Whoever runs the command line or imports ``jumpsync.api`` has the config file and the database, so is trusted;
what is recorded is the operating system's login name, never text the caller chose (a request may say on whose
behalf it is asked, in ``on_behalf_of``). A token's requester is ``auth.scopes.Principal.requester``.
"""

from __future__ import annotations

import getpass
import os


def login_name() -> str:
    """The login name of the process's user id: not ``getpass.getuser()`` first, which believes ``LOGNAME`` and
    ``USER``, variables the caller sets. Where the uid has no passwd entry (a container run as an arbitrary uid)
    or there is no ``pwd`` (Windows), ``getpass.getuser()``; ``unknown`` if that fails too."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        pass
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001  (OSError or KeyError when there is no login name at all)
        return "unknown"


def cli_requester() -> str:
    return f"cli:{login_name()}"


def python_requester() -> str:
    return f"python:{login_name()}"
