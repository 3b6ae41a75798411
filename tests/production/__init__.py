"""Production-shaped tests: several instances, their own Redis and Postgres, faults under load."""
