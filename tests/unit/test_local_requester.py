"""The local entry points' requester is the OS login of the process's user, not what the environment says."""

from __future__ import annotations

import getpass
import os

import pytest

from auth import local

pwd = pytest.importorskip("pwd")


def test_the_login_comes_from_the_user_id_not_from_logname(monkeypatch):
    real = pwd.getpwuid(os.getuid()).pw_name
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "someone-else")
    assert getpass.getuser() == "someone-else"  # what the environment claims
    assert local.login_name() == real
    assert local.cli_requester() == f"cli:{real}" and local.python_requester() == f"python:{real}"


def test_without_a_passwd_entry_the_environment_is_all_there_is(monkeypatch):
    def no_entry(uid):
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setenv("LOGNAME", "container")
    assert local.login_name() == "container"
    monkeypatch.setattr(getpass, "getuser", lambda: (_ for _ in ()).throw(OSError("no login")))
    assert local.login_name() == "unknown"
