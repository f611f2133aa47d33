"""Pipeline stages: each reads and writes tables under a `Workspace` and returns a summary."""
