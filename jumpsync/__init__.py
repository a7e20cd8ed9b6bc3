"""jumpsync's Python interface for other programs: ``jumpsync.api`` submits provisioning requests."""
