"""`python -m federation.cli` is `meshfed`."""

import sys

from federation.cli import main

sys.exit(main())
