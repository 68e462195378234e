"""Revocation: recording revocations, CRLs and OCSP for backends whose keys we hold."""
