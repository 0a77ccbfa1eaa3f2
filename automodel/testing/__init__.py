"""Tools for testing AutoModel itself (the test suite and the benchmarks use them; a search never does)."""
