# Vault (or OpenBao): the KV v2 and Transit engines, and one least-privilege policy and AppRole per identity.
# Secrets themselves (Kafka SCRAM passwords, S3 keys, gateway tokens) are written into KV by the platform's
# credential tooling, never by Terraform, so that they never reach a state file.

resource "vault_mount" "kv" {
  path        = var.mounts.kv
  type        = "kv"
  options     = { version = "2" }
  description = "hybridbus: per-identity Kafka, S3 and gateway credentials"
}

resource "vault_mount" "transit" {
  path        = var.mounts.transit
  type        = "transit"
  description = "hybridbus: pseudonymisation HMAC and audit-trail signatures; keys never leave Vault"
}

resource "vault_transit_secret_backend_key" "this" {
  for_each = var.transit_keys

  backend          = vault_mount.transit.path
  name             = each.key
  type             = each.value
  key_size         = each.value == "hmac" ? 32 : null
  deletion_allowed = false
  exportable       = false
}

resource "vault_auth_backend" "approle" {
  type = "approle"
  path = var.approle_path
}

resource "vault_policy" "this" {
  for_each = var.roles

  name   = each.key
  policy = each.value.policy
}

# People's duties: policies only; the platform's OIDC or LDAP auth method maps groups onto them (four eyes:
# an engineer signs as proposer, an approver as approver, an operator the emergency stop).
resource "vault_policy" "person" {
  for_each = var.person_roles

  name   = each.key
  policy = each.value.policy
}

resource "vault_approle_auth_backend_role" "this" {
  for_each = var.roles

  backend        = vault_auth_backend.approle.path
  role_name      = each.key
  token_policies = [vault_policy.this[each.key].name]
  token_ttl      = each.value.token_ttl
  token_max_ttl  = each.value.token_max_ttl
  token_type     = "service"
  secret_id_ttl  = var.secret_id_ttl
}
