# Topics and deny-by-default ACLs of one Kafka cluster, private or public. The brokers must run an
# authorizer with allow.everyone.if.no.acl.found=false: these ACLs are the only grants.

locals {
  # Operations that put records on a topic, or could grant that ability.
  writing_operations = ["Write", "All", "Create", "Alter", "AlterConfigs", "IdempotentWrite"]
}

resource "kafka_topic" "this" {
  for_each = var.topics

  name               = each.key
  partitions         = each.value.partitions
  replication_factor = each.value.replication_factor
  config             = merge(var.default_topic_config, each.value.config)

  lifecycle {
    precondition {
      condition     = var.cluster == "private" || startswith(each.key, "public.")
      error_message = "Topic ${each.key} is not a public.* topic: nothing non-public may exist on the public cluster."
    }
  }
}

resource "kafka_acl" "this" {
  for_each = var.acls

  acl_principal                = each.value.principal
  acl_host                     = "*"
  acl_operation                = each.value.operation
  acl_permission_type          = "Allow"
  resource_type                = each.value.resource_type
  resource_name                = each.value.resource_name
  resource_pattern_type_filter = each.value.pattern

  lifecycle {
    precondition {
      condition = (
        var.cluster == "private"
        || each.value.principal == var.public_writer
        || each.value.resource_type != "Topic"
        || !contains(local.writing_operations, each.value.operation)
      )
      error_message = "ACL ${each.key} lets ${each.value.principal} write to the public cluster; only ${var.public_writer} may."
    }
  }
}
