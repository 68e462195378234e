"""EST front end (RFC 7030, with RFC 8951 clarifications)."""
