"""ACME (RFC 8555) front end with tls-alpn-01 (RFC 8737), IP identifiers (RFC 8738),
ARI (RFC 9773), External Account Binding and the ACME profiles draft."""
