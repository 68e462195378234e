"""Per-protocol configuration sections (one module each), validated with the rest.

They live in ``gateway`` (not ``protocols``) because the configuration is validated before
any front end is imported: dependencies point protocols → gateway, never back.
"""
