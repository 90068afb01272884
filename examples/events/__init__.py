"""Per-user event delivery example (brokers, bridge, run liveness)."""
