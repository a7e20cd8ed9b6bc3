"""Metrics and logs: how jumpsync reports on itself."""
