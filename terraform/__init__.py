"""meshfed's Terraform integration: the `meshfed/meshfed` provider and its HCL modules.

Why this is a Python package: the provider (`terraform.provider`) is Python,
speaking Terraform's plugin protocol through PyPI `tf`, and is installed as the
`terraform-provider-meshfed` console script. The HCL next to it (`modules/`,
`examples/`) is data, not code. Nothing here imports the rest of meshfed: the
provider drives the registry only through its public REST API, like any client.
"""
