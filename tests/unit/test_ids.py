"""The one definition of a JumpCloud object id, and the places that check ids by it."""

from __future__ import annotations

import re

import pytest

from connector.organizations import map_organization
from jumpcloud.ids import OBJECT_ID_PATTERN, is_object_id
from simulator.model import object_id

ID = "5f1e2d3c4b5a697887766554"


@pytest.mark.parametrize("value", [ID, "0" * 24, "abcdef0123456789abcdef01"])
def test_24_lowercase_hex_digits_are_an_id(value):
    assert is_object_id(value)


@pytest.mark.parametrize("value", [ID.upper(), ID[:-1], ID + "0", f" {ID}", f"{ID}\n", "g" * 24, "", None, 5,
                                   "５f1e2d3c4b5a69788776655"])
def test_anything_else_is_not(value):
    assert not is_object_id(value)


def test_the_pattern_fits_inside_a_larger_one():
    assert re.fullmatch(rf"/api/v2/usergroups/({OBJECT_ID_PATTERN})", f"/api/v2/usergroups/{ID}")


def test_the_simulator_makes_ids_of_that_form():
    import random

    rng = random.Random(1)
    assert all(is_object_id(object_id(rng, when)) for when in (0, 1.5e9, 2**32 - 1))


def test_config_and_the_org_listing_check_by_it():
    from config.values import check_org_id

    assert check_org_id(ID) == ID and check_org_id(None) is None
    with pytest.raises(ValueError):
        check_org_id(ID.upper())
    assert map_organization({"_id": ID.upper()}).id == ID  # what the listing sends is folded first
    assert map_organization({"_id": ID[:-1]}) is None


def test_a_trailing_newline_is_not_part_of_an_id():
    """``$`` matches before a final newline; the check must not (a name could then pass for an id)."""
    assert not is_object_id("5f0c1b2a3d4e5f6a7b8c9d0e\n")
