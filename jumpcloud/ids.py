"""JumpCloud object ids: the one definition of what an id looks like.

JumpCloud ids are MongoDB ObjectIds written as 24 lowercase hexadecimal digits: every id in JumpCloud's
published specs has that form (the specs give no pattern of their own), and so does every id the API hands
out. That is the form ``x-org-id`` and the ids in request paths take; an id in any other case is not the same
id. This module imports nothing heavy, so that the config loader can use it without loading the client.
"""

from __future__ import annotations

import re

__all__ = ["OBJECT_ID_PATTERN", "is_object_id"]

#: The regular expression of an id, without anchors, for use inside a larger pattern (a request path).
OBJECT_ID_PATTERN = "[0-9a-f]{24}"

_OBJECT_ID = re.compile(OBJECT_ID_PATTERN)


def is_object_id(value: object) -> bool:
    """True for a string of exactly 24 lowercase hexadecimal digits."""
    return isinstance(value, str) and _OBJECT_ID.fullmatch(value) is not None
