"""Push wake-ups for devices with no open stream (docs/realtime.md "Push")."""
