"""vap-env."""
