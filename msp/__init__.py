"""MSP keys: the organisations an ``[[msp]]`` key reaches, each synced as a connector of its own.

- ``msp.discovery``: list ``GET /api/organizations`` with the MSP key and record the listing in
  ``msp_organizations`` (``discover``, ``apply_listing``).
- ``msp.views``: what the rows mean to the rest of jumpsync: the connectors they make (``discovered_connectors``,
  added by ``worker.runtime`` to the settings of every process) and what ``jumpsync msp`` shows.
- ``msp.names``: the connector name an organisation is given.

It stands beside ``pipeline`` and ``provisioning``: none of the three imports another.

The rules (docs/msp.md):

- An organisation's connector name is chosen when it is first listed, ``<msp>-<its name as a slug>``, and kept:
  a renamed organisation keeps its connector and its data. A name is never reused, not even one a connector of
  ``[[connectors]]`` or an earlier sync registered, so no organisation inherits another's rows.
- An organisation missing from a listing keeps running until it has been missing ``remove_after``; then its
  connector stops (its data stays). Listed again, it runs again, under the same name.
- A listing that fails changes nothing (the failure is recorded for ``jumpsync msp``).
- An organisation a ``[[connectors]]`` entry or an earlier ``[[msp]]`` table already syncs is not run twice
  (``config.settings.split_discovered``; ``shadowed`` in ``jumpsync msp list``).
- ``include``/``exclude`` are applied when the connectors are built, so a change to them takes effect with the
  config file, without a listing.
"""