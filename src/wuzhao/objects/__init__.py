"""The object store: its contract (api), name rules (names) and the embedded backend (local)."""
