"""The outside world: persistence settings, the eventsourcing application, the command line."""
