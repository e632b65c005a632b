"""The vote path: Redis keys, scripts, the hot-path store, campaign registry, identities."""
