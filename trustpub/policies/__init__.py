"""Trust policies: the model, strict loading from TOML files, and the lookup index."""
