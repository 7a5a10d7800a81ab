"""AntM2C-shaped synthetic click logs with a known click probability (`python -m synthetic`)."""
