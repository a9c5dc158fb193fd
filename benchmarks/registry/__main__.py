"""Entry point: `python -m benchmarks.registry`."""

from benchmarks.registry.run import main

raise SystemExit(main())
