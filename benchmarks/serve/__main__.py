"""`python -m benchmarks.serve`: see the package docstring."""

from benchmarks.serve.run import main

main()
