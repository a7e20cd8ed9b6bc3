"""``jumpsync flower``: Flower as a dashboard that watches the workers and starts nothing.

Three rules, each closing a way in that plain ``celery flower`` leaves open:

* **No task is started from Flower.** Flower's HTTP API can start any registered task
  (``/api/task/apply``, ``/api/task/async-apply``, ``/api/task/send-task``): that would let anyone with a Flower
  login apply provisioning (``jumpsync.provision*``) with whatever arguments and ``requested_by`` they write.
  Every jumpsync task has its own entry point that records who asked (the CLI, the Python interface, beat), so
  these three endpoints answer 403 for *every* task name, not only for provisioning: a sync started from Flower
  would be as unaccountable, and a list of allowed names would have to be kept in step with the tasks.
  Flower's controls that start nothing (revoke, rate limits, pool size, consumers) stay.
* **Auth is on unless switched off on loopback.** The basic-auth users come from ``$JUMPSYNC_FLOWER_BASIC_AUTH``,
  the file named by ``$JUMPSYNC_FLOWER_BASIC_AUTH_FILE`` or Flower's own ``$FLOWER_BASIC_AUTH``
  (``user:password[,user:password]``), or Flower's own OAuth settings (``$FLOWER_AUTH_PROVIDER``). Without them Flower refuses to start; ``--no-auth`` allows it
  on a loopback address only, never on one that others can reach.
* **No secret in the process arguments.** The users reach Flower through its ``FLOWER_BASIC_AUTH`` environment
  variable, never ``--basic-auth`` (which every local user reads in ``ps``). Flower runs inside this process
  (Celery's own ``flower`` command, not an ``exec``), so its command line is ``jumpsync flower --port …``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Mapping

DEFAULT_PORT = 5555
AUTH_ENV = "JUMPSYNC_FLOWER_BASIC_AUTH"
AUTH_FILE_ENV = "JUMPSYNC_FLOWER_BASIC_AUTH_FILE"
#: Flower's own variables: what it reads its basic-auth users and OAuth provider from.
FLOWER_AUTH_ENV = "FLOWER_BASIC_AUTH"
FLOWER_OAUTH_ENV = "FLOWER_AUTH_PROVIDER"
#: The endpoints of Flower's API that start a task by name.
TASK_STARTING_PATHS = (r"/api/task/apply/(.+)", r"/api/task/async-apply/(.+)", r"/api/task/send-task/(.+)")
REFUSAL = ("jumpsync's Flower starts no tasks: start a sync with `jumpsync sync`, and submit provisioning "
           "through its entry points, which record who asked")


class FlowerRefused(RuntimeError):
    """Flower must not start as asked; the message says why and what to set (never a secret's value)."""


def is_loopback(address: str) -> bool:
    """True for an address only this host can reach: 127.0.0.0/8, ::1 or ``localhost``."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name or "" (every interface)


def valid_basic_auth(value: str) -> bool:
    """``user:password[,user:password]`` with neither part empty."""
    pairs = [pair.partition(":") for pair in value.split(",")]
    return bool(pairs) and all(user and sep and password for user, sep, password in pairs)


def basic_auth(environ: Mapping[str, str]) -> str | None:
    """The basic-auth users from the environment or the file it names; None when none is set."""
    value = environ.get(AUTH_ENV, "").strip()
    source = AUTH_ENV
    if not value and environ.get(FLOWER_AUTH_ENV):
        value, source = environ[FLOWER_AUTH_ENV].strip(), FLOWER_AUTH_ENV
    if not value and environ.get(AUTH_FILE_ENV):
        path = Path(environ[AUTH_FILE_ENV])
        source = f"{AUTH_FILE_ENV} ({path})"
        try:
            if path.stat().st_mode & 0o077:
                raise FlowerRefused(f"{source} can be read by others: chmod 600 it")
            value = path.read_text().strip()
        except OSError as exc:
            raise FlowerRefused(f"{source} cannot be read: {exc.strerror}") from None
    if not value:
        return None
    if not valid_basic_auth(value):
        raise FlowerRefused(f"{source} must be user:password[,user:password] (neither part empty)")
    return value


def flower_environment(environ: Mapping[str, str], *, address: str, no_auth: bool) -> dict[str, str]:
    """The variables to set for Flower: its users; raises FlowerRefused when it must not start as asked."""
    users = basic_auth(environ)
    oauth = bool(environ.get(FLOWER_OAUTH_ENV))
    if users is None and not oauth:
        if not no_auth:
            raise FlowerRefused(
                f"Flower needs authentication: set {AUTH_ENV}=user:password (or {AUTH_FILE_ENV}=a file holding "
                f"it, mode 600), or Flower's OAuth ({FLOWER_OAUTH_ENV}); --no-auth is allowed on loopback only")
        if not is_loopback(address):
            raise FlowerRefused(f"--no-auth on {address or 'every interface'}: Flower without authentication "
                                "may listen on a loopback address only (127.0.0.1)")
    return {FLOWER_AUTH_ENV: users} if users else {}


def close_task_starting_endpoints() -> None:
    """Point Flower's task-starting endpoints at a handler that refuses; Flower's app reads this same list."""
    import tornado.web
    from flower import urls
    from flower.views import BaseHandler

    class TaskStartingRefused(BaseHandler):
        """403 for any method, after Flower's own authentication (a missing or wrong login is still 401)."""

        @tornado.web.authenticated
        def _refuse(self, *args: str) -> None:
            self.set_status(403)
            self.write({"error": REFUSAL})

        get = post = put = delete = patch = _refuse

    urls.handlers[:] = [(handler[0], TaskStartingRefused) if _pattern(handler) in TASK_STARTING_PATHS else handler
                        for handler in urls.handlers]


def _pattern(handler) -> str:
    return handler.regex.pattern.removesuffix("$") if hasattr(handler, "regex") else handler[0]


def run(*, port: int, address: str, no_auth: bool) -> None:
    """Run Flower in this process on the jumpsync Celery app (raises FlowerRefused before it starts)."""
    os.environ.update(flower_environment(os.environ, address=address, no_auth=no_auth))
    close_task_starting_endpoints()
    from celery.bin.celery import celery

    celery.main(args=["-A", "worker.celery_app", "flower", f"--port={port}", f"--address={address}"],
                prog_name="celery")
