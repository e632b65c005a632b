"""Anti-fraud: proof of work, blocklist, suspicious groups, invalidations, SMS sign-in."""
