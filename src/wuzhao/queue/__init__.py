"""The durable queue of asynchronous calls: its contract (api) and implementations."""
