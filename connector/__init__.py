"""The JumpCloud connector: one syncer per fetched resource type, and the derived ones (roles, links)."""

from connector.admins import AdminSyncer
from connector.apps import AppSyncer
from connector.groups import GroupSyncer
from connector.users import UserSyncer

#: The resource types fetched from the API, each by its own syncer (roles are derived from admins).
FETCH_SYNCERS = {
    "user": UserSyncer,
    "admin": AdminSyncer,
    "group": GroupSyncer,
    "app": AppSyncer,
}
