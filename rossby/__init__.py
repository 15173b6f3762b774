"""Rossby: a geo-replicated inbox and keystore for end-to-end-encrypted messaging."""

__version__ = "0.1.0"
