"""Durable state behind one interface (``store.api``); SQLite is the embedded backend."""
