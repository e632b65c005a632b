"""The vote path's domain: the vote itself, identities, partner tokens, the campaign registry,
the ledger entry, outcomes and the console's timeline."""
