"""`terraform-provider-meshfed`: the executable Terraform starts as the plugin.

Why this module exists: it is the console script's entry point and nothing
more; Terraform runs it (several times per command) and talks gRPC to it.
"""

from __future__ import annotations

import sys


def main() -> int:
    from tf.runner import run_provider  # imported here: `--help`-style use stays instant

    from terraform.provider.provider import MeshfedProvider

    run_provider(MeshfedProvider(), sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
