"""Fuzzing a live server (issue 9): schemathesis over ``/schema/openapi.json``, hypothesis over the Kobo and kosync
bodies. ``python -m tests.fuzz.run --cases N --seed S`` is the long run; ``test_fuzz.py`` is its CI smoke. Any 5xx
fails both.
"""
