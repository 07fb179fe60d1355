"""HTTP plumbing shared by the service's applications."""
