"""HTTP routes: thin handlers that parse typed parameters, call the catalogue and respond."""
