"""SCEP front end (RFC 8894): GetCACaps, GetCACert, GetNextCACert and PKIOperation."""
