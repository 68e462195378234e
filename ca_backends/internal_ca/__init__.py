"""The internal CA's building blocks: keys, files, certificate profiles, revocation signing.

``ca_backends.internal`` assembles them into the backend and registers it; import the
public API from there.
"""
