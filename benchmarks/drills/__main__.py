"""Entry point: `python -m benchmarks.drills`."""

from benchmarks.drills.run import main

raise SystemExit(main())
