"""The actions and their parameters: the validated shape of every request.

Principals and targets may be named by JumpCloud id or as a person types them (email or username for
accounts; name for groups, apps and roles); names are resolved later, against the synced database first.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.actions import ACTION_NAMES, MAX_TEXT

Ref = Field(min_length=1, max_length=MAX_TEXT)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class GroupMemberParams(Params):
    group: str = Ref
    user: str = Ref


class AppAccessParams(Params):
    """Access for a user or for a user group: exactly one of the two."""

    app: str = Ref
    user: str | None = Field(default=None, min_length=1, max_length=256)
    group: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_principal(self) -> AppAccessParams:
        if (self.user is None) == (self.group is None):
            raise ValueError("give exactly one of user and group")
        return self


class RoleParams(Params):
    admin: str = Ref
    role: str = Ref


class UserRefParams(Params):
    user: str = Ref


class UserCreateParams(Params):
    email: str = Field(min_length=3, max_length=256, pattern=r"^[^@\s]+@[^@\s]+$")
    username: str = Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")
    state: Literal["staged", "activated"] = "staged"
    firstname: str | None = Field(default=None, max_length=256)
    lastname: str | None = Field(default=None, max_length=256)
    displayname: str | None = Field(default=None, max_length=256)
    department: str | None = Field(default=None, max_length=256)
    job_title: str | None = Field(default=None, max_length=256)
    employee_type: str | None = Field(default=None, max_length=256)
    employee_id: str | None = Field(default=None, max_length=256)
    company: str | None = Field(default=None, max_length=256)
    cost_center: str | None = Field(default=None, max_length=256)
    location: str | None = Field(default=None, max_length=256)

    #: our field -> JumpCloud's
    JUMPCLOUD_FIELDS: ClassVar[dict[str, str]] = {"firstname": "firstname", "lastname": "lastname", "displayname": "displayname",
                        "department": "department", "job_title": "jobTitle", "employee_type": "employeeType",
                        "employee_id": "employeeIdentifier", "company": "company", "cost_center": "costCenter",
                        "location": "location"}

    def body(self) -> dict:
        """The JumpCloud create body."""
        body = {"email": self.email, "username": self.username, "state": self.state.upper()}
        for ours, theirs in self.JUMPCLOUD_FIELDS.items():
            if getattr(self, ours) is not None:
                body[theirs] = getattr(self, ours)
        return body


PARAMS: dict[str, type[Params]] = {
    "group.add-member": GroupMemberParams,
    "group.remove-member": GroupMemberParams,
    "app.grant": AppAccessParams,
    "app.revoke": AppAccessParams,
    "role.set": RoleParams,
    "user.create": UserCreateParams,
    "user.activate": UserRefParams,
    "user.suspend": UserRefParams,
    "user.unsuspend": UserRefParams,
    "user.delete": UserRefParams,
}
if tuple(PARAMS) != ACTION_NAMES:
    raise RuntimeError("config.actions.ACTION_NAMES must list the actions of PARAMS, in the same order")


class InvalidRequest(ValueError):
    """A request that can never succeed as given: an entry point refuses it before recording anything
    (``requests.check_submission``); over the broker or in a bulk file it is recorded ``rejected`` with this message."""


def check_texts(**texts: str | None) -> None:
    """InvalidRequest naming each of ``texts`` (idempotency_key, requested_by, on_behalf_of) that is empty or
    longer than the database stores: every entry point refuses them before anything is written."""
    problems = [f"{name} must be 1 to {MAX_TEXT} characters (got {len(value)})"
                for name, value in texts.items() if value is not None and not 0 < len(value) <= MAX_TEXT]
    if problems:
        raise InvalidRequest("; ".join(problems))


def validate_params(action: str, params: object) -> Params:
    """The parameters as their model, or InvalidRequest naming each problem."""
    model = PARAMS.get(action)
    if model is None:
        raise InvalidRequest(f"unknown action {action!r} (known: {', '.join(ACTION_NAMES)})")
    if not isinstance(params, dict):
        raise InvalidRequest(f"{action}: params must be an object, not {type(params).__name__}")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required"
            elif error["type"] == "extra_forbidden":
                message = "is not a parameter of this action"
            problems.append(f"{where} {message}".strip())
        raise InvalidRequest(f"{action}: " + "; ".join(problems)) from None
