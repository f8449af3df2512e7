"""fastmlp's benchmarks: the pytest-benchmark suite (``pytest benchmarks/``) and the comparison."""
