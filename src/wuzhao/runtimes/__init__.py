"""Language runtimes and the language-neutral protocol they speak with the worker."""
