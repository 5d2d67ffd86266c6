"""The HTTP face of the platform: management API, invoke path, authentication."""
