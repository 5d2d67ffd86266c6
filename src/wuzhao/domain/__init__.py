"""Pure decisions: models, validation, states, scaling. No sockets, files, clocks or fork."""
