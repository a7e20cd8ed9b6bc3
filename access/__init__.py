"""Access insight from the synced database: who holds what and why, the report, the export, stored renderings.

The contract is in access/README.md.
"""
