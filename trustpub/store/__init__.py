"""Stores: where issued tokens, claimed JWT ids and GitLab namespace pins live."""
