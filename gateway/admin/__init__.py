"""Operating Gatehouse: the admin REST API (``/admin/api/``), its tokens and roles."""
