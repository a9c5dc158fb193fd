terraform {
  required_version = ">= 1.3" # optional() object attributes

  required_providers {
    meshfed = {
      source = "meshfed/meshfed"
    }
  }
}
