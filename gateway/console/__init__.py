"""The web console at /console: server-rendered pages for operators."""
