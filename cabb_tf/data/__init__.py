"""Event logs, sessions, labels, point-in-time features and the simulator."""
