"""Entry point: `python -m benchmarks.store`."""

from benchmarks.store.run import main

raise SystemExit(main())
