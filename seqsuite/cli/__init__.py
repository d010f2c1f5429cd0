"""The `seqsuite` command line: argument parsing only; every command calls the Python API."""
