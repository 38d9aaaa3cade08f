"""Frontends: run on callers' threads and loops; talk to the engine by messages only."""
