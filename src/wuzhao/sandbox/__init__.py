"""Linux sandboxes for function instances: namespaces, mounts, cgroups, identity."""
