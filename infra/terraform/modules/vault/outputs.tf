output "approle_role_names" {
  description = "Every AppRole, so that the platform can issue each identity its RoleID and SecretID."
  value       = sort(keys(vault_approle_auth_backend_role.this))
}

output "person_policy_names" {
  description = "The policies to bind to people's groups in the OIDC or LDAP auth method."
  value       = sort(keys(vault_policy.person))
}
