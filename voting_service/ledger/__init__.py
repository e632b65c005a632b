"""The durable ledger: PostgreSQL schema and queries, flusher, reconcile, export."""
