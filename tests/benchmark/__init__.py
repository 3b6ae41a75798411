"""The benchmark suite: real servers, real HTTP, measured with wrk. Not part of the pytest run."""
