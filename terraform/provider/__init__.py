"""The `meshfed/meshfed` Terraform provider (resources and data sources over the REST API).

Why this package stays import-light: Terraform starts the plugin 3-4 times per
command, so its import time is paid on every `plan`. Modules here import only
the standard library and `tf`; HTTP uses `urllib.request`, imported lazily.
"""
