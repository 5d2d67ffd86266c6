"""What the platform records about calls: invocation records and log lines."""
