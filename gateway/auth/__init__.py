"""Authentication: hashed secrets, credential stores, client certificates."""
