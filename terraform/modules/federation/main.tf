locals {
  names = [for c in var.clusters : c.name]
  hub   = coalesce(var.hub, local.names[0])

  # Every unordered pair once, each as (a, b) in name order.
  full_mesh = flatten([
    for i, x in local.names : [
      for j, y in local.names : { a = sort([x, y])[0], b = sort([x, y])[1] } if j > i
    ]
  ])
  # The hub is always `a`: with bidirectional = false, a imports what b exports.
  hub_and_spoke = [for n in local.names : { a = local.hub, b = n } if n != local.hub]

  pairs = var.topology == "full-mesh" ? local.full_mesh : local.hub_and_spoke
  # Links are keyed by their sorted pair, so switching topology keeps the links both
  # topologies share (a swapped a/b replaces that one link, never races a duplicate).
  links = { for p in local.pairs : join("/", sort([p.a, p.b])) => p }
}

resource "meshfed_cluster" "this" {
  for_each = { for c in var.clusters : c.name => c }

  name              = each.value.name
  region            = each.value.region
  zone              = each.value.zone
  trust_domain      = each.value.trust_domain
  network           = each.value.network
  gateway_addresses = each.value.gateway_addresses
  source            = each.value.source
  labels            = each.value.labels
}

resource "meshfed_link" "this" {
  for_each = local.links

  a             = meshfed_cluster.this[each.value.a].name
  b             = meshfed_cluster.this[each.value.b].name
  bidirectional = var.bidirectional
  mode          = var.link_mode
  namespaces    = length(var.namespaces) > 0 ? var.namespaces : null
}
