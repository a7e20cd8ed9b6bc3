"""Who may ask jumpsync for what: API tokens and the scopes they carry.

The model
---------
An operator (someone with the config file and the database) creates a token with ``jumpsync tokens create``;
a tool that speaks HTTP (a ticketing system, a portal, a chat bot) presents it as ``Authorization: Bearer …``.
The token stands for one *principal* (``auth.scopes.Principal``): its name is what ``requested_by`` records
(``token:<name>``), never a value the caller writes, and its scopes are all it may do:

- ``provision:<connector|*>[:<action|*>]`` asks for access changes on a connector (all actions, or one);
- ``read:<connector|*>`` reads requests, access and status of a connector;
- ``approve:<connector|*>`` approves or denies a connector's requests.

A verb grants nothing beyond itself: provisioning does not imply reading, nor approving. What a principal may
not be granted is refused (fail closed): a scope stored by an older release that no longer parses is dropped.
Operators at the command line and code calling ``jumpsync.api`` are trusted as before and recorded as
``cli:<login>`` and ``python:<login>``.

Why SHA-256 and not a slow KDF
------------------------------
A token's secret is 256 bits from ``secrets.token_urlsafe(32)``, not a password a person chose: there is no
dictionary to try and no way to search 2**256 candidates, so a stolen table of SHA-256 digests reveals nothing
usable, and key stretching (bcrypt, scrypt, Argon2) would only make every API call pay tens of milliseconds for
no protection. The database holds the digest only; the token text is shown once, when it is created.

Modules: ``auth.scopes`` (the grammar and ``Principal.may``), ``auth.tokens`` (create, authenticate, revoke,
list), ``auth.local`` (the ``cli:``/``python:`` requesters). This package imports ``config`` and ``models`` only
(layer 4 in docs/architecture.md).
"""
