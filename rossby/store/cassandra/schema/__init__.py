"""Versioned CQL schema files, applied in order by ``migrate``.

``NNNN_name.cql`` holds version NNNN. Statements end with ``;`` at the end
of a line; ``${keyspace}`` names the store's keyspace. Every statement
must be idempotent (``IF NOT EXISTS``), because a migration interrupted
between a statement and its ``schema_version`` row is simply run again.
"""
