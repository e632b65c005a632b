"""What every connection and request passes before a route: the HTTP protocol (votes
answered in it), the guarded server contract, address caps, the header scan, the URL
check and the security headers."""
