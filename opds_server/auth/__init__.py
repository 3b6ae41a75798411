"""Who is asking: HTTP Basic (what e-readers speak) and JWT bearer tokens, both resolved through the
credential cache so argon2 runs once per credential, plus app passwords, rate limits and the 401s
clients understand."""
