"""Helpers that several test folders share: fake clocks, the backend list,
the gRPC error checks. Fixtures that use them live in the conftest files."""
