"""Numbered schema files, ``NNNN_name.sql``, applied in order by ``migrate``.

A package (rather than a bare folder) so the ``*.sql`` package-data rule
ships these files in a wheel too.
"""
