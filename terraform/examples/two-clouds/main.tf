# Two clusters in different clouds and regions, federated by one meshfed registry.
# See terraform/README.md for running this offline against `meshfed serve`.

terraform {
  required_version = ">= 1.3"

  required_providers {
    meshfed = {
      source = "meshfed/meshfed"
    }
  }
}

provider "meshfed" {
  endpoint = var.endpoint
  # The token comes from MESHFED_TOKEN when token_file is unset.
  token = var.token_file == null ? null : trimspace(file(var.token_file))
}

module "federation" {
  source = "../../modules/federation"

  topology = "full-mesh"
  clusters = [
    {
      name              = "aws-use1"
      region            = "us-east-1"
      zone              = "us-east-1a"
      network           = "aws"
      gateway_addresses = ["203.0.113.10:15443"]
      labels            = { cloud = "aws" }
    },
    {
      name              = "gcp-euw1"
      region            = "europe-west1"
      zone              = "europe-west1-b"
      network           = "gcp"
      gateway_addresses = ["198.51.100.20:15443"]
      labels            = { cloud = "gcp" }
    },
  ]
}

# The federation's public trust bundle for one of the clusters (no token needed).
data "meshfed_trust_bundle" "aws" {
  trust_domain = module.federation.trust_domains["aws-use1"]
}
