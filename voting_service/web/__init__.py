"""The HTTP edge: public and admin API, pages, assets, security headers."""
