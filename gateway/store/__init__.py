"""Persistence: tables, the database handle and typed repository functions.

Repositories take a ``Session`` and never commit; the request (or job) boundary does.
"""
