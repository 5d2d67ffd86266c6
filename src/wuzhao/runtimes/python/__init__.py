"""The Python runtime: the zygote that forks instances and the loop that runs handlers."""
