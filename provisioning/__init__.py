"""Provisioning: access changes applied to JumpCloud as durable, idempotent, recorded requests."""
