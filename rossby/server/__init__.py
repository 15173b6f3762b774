"""The gRPC server: lifecycle in ``app``, RPC handlers in ``service``."""
