"""Providers: how each CI system's claims are read and matched to a policy."""
