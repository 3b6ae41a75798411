"""The test suite; ``python3 -m tests`` sets up the environment and runs every check."""
