"""``[[connectors.provisioning.approval]]``: what a rule may say, and errors that name the problem."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.actions import ACTION_NAMES
from config.connector import ApprovalRule, ProvisioningPolicy


def test_defaults_cover_every_action_and_target():
    rule = ApprovalRule()
    assert rule.actions == ACTION_NAMES and rule.targets == ("*",) and rule.approvers == 1
    policy = ProvisioningPolicy()
    assert policy.approval == () and policy.approval_expires == "72h"


def test_a_rule_from_the_config_file():
    policy = ProvisioningPolicy.model_validate({"approval": [
        {"actions": ["group.add-member"], "targets": ["*admin*", " AWS* "], "approvers": 2}],
        "approval_expires": "24h"})
    assert policy.approval[0].targets == ("*admin*", "AWS*") and policy.approval[0].approvers == 2


@pytest.mark.parametrize(("rule", "message"), [
    ({"actions": ["group.add"]}, "unknown action 'group.add'"),
    ({"actions": []}, "must name at least one action"),
    ({"targets": []}, "must name at least one pattern"),
    ({"targets": ["  "]}, "a target pattern must not be empty"),
    ({"approvers": 3}, "approvers"),
    ({"approvers": 0}, "approvers"),
    ({"approver": 2}, "approver"),
])
def test_invalid_rules_name_the_problem(rule, message):
    with pytest.raises(ValidationError) as caught:
        ProvisioningPolicy.model_validate({"approval": [rule]})
    assert message in str(caught.value)


def test_approval_expires_is_a_duration():
    with pytest.raises(ValidationError, match="is not a duration"):
        ProvisioningPolicy(approval_expires="three days")
