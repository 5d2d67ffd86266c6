"""The control plane: what is deployed (functions, their code packages, API keys)."""
