"""The worker: instance pools, the runtime channel, output capture, one call end to end."""
