"""Client-side helpers for talking to a Rossby server."""
