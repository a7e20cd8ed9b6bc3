"""The HTTP API (docs/api.md): provisioning requests and read-only views for ticketing systems, portals and bots,
authenticated by API tokens (package ``auth``) and served by ``jumpsync api``."""
