# Endpoints and names only. Credentials come from the environment, never from a file of this repository:
#   Kafka: TF_VAR_private_kafka_password, TF_VAR_public_kafka_password (SCRAM-SHA-512 admin logins)
#   Vault: VAULT_TOKEN (or VAULT_ADDR-side auth such as a token helper)
#   AWS:   AWS_PROFILE, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN

variable "private_bootstrap_servers" {
  description = "Brokers of the private-cloud Kafka cluster, host:port (SASL_SSL listener)."
  type        = list(string)
}

variable "public_bootstrap_servers" {
  description = "Brokers of the public-cloud Kafka cluster, host:port (SASL_SSL listener)."
  type        = list(string)
}

variable "private_kafka_username" {
  description = "SCRAM admin login that applies topics and ACLs on the private cluster."
  type        = string
}

variable "private_kafka_password" {
  description = "Its password: set TF_VAR_private_kafka_password in the environment."
  type        = string
  sensitive   = true
}

variable "public_kafka_username" {
  description = "SCRAM admin login that applies topics and ACLs on the public cluster."
  type        = string
}

variable "public_kafka_password" {
  description = "Its password: set TF_VAR_public_kafka_password in the environment."
  type        = string
  sensitive   = true
}

variable "vault_address" {
  description = "Vault (or OpenBao) API address, https://…"
  type        = string
}

variable "aws_region" {
  description = "Region of the public cloud's S3 (open-data bucket)."
  type        = string
}

variable "private_s3_endpoint" {
  description = "S3-compatible endpoint of the private cloud for the audit bucket; null = AWS S3 in private_s3_region."
  type        = string
  default     = null
}

variable "private_s3_region" {
  description = "Region name the private cloud's S3 endpoint expects."
  type        = string
}

variable "open_data_bucket" {
  description = "Name of the open-data bucket."
  type        = string
  default     = "hbus-open-data"
}

variable "audit_bucket" {
  description = "Name of the audit bucket."
  type        = string
  default     = "hbus-audit"
}

variable "public_access_log_bucket" {
  description = "Existing bucket in the public cloud that receives the open-data bucket's access logs."
  type        = string
}

variable "private_access_log_bucket" {
  description = "Existing bucket in the private cloud that receives the audit bucket's access logs."
  type        = string
}
