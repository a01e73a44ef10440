# One deployment of hybridbus: both Kafka clusters, Vault, and the two buckets, all from the topology
# that `hbus infra render` wrote into ../../generated (never edit those files by hand).

provider "kafka" {
  alias             = "private"
  bootstrap_servers = var.private_bootstrap_servers
  tls_enabled       = true
  sasl_mechanism    = "scram-sha512"
  sasl_username     = var.private_kafka_username
  sasl_password     = var.private_kafka_password
}

provider "kafka" {
  alias             = "public"
  bootstrap_servers = var.public_bootstrap_servers
  tls_enabled       = true
  sasl_mechanism    = "scram-sha512"
  sasl_username     = var.public_kafka_username
  sasl_password     = var.public_kafka_password
}

provider "vault" {
  address = var.vault_address
}

provider "aws" {
  alias  = "public"
  region = var.aws_region
}

provider "aws" {
  alias                       = "private"
  region                      = var.private_s3_region
  s3_use_path_style           = var.private_s3_endpoint != null
  skip_region_validation      = var.private_s3_endpoint != null
  skip_credentials_validation = var.private_s3_endpoint != null

  dynamic "endpoints" {
    for_each = var.private_s3_endpoint == null ? [] : [var.private_s3_endpoint]
    content {
      s3  = endpoints.value
      sts = endpoints.value
    }
  }
}

module "topology" {
  source = "../../generated"
}

module "kafka_private" {
  source    = "../../modules/kafka-cluster"
  providers = { kafka = kafka.private }

  cluster = "private"
  topics  = module.topology.private_topics
  acls    = module.topology.private_acls
}

module "kafka_public" {
  source    = "../../modules/kafka-cluster"
  providers = { kafka = kafka.public }

  cluster = "public"
  topics  = module.topology.public_topics
  acls    = module.topology.public_acls
}

module "vault" {
  source = "../../modules/vault"

  mounts       = module.topology.vault_mounts
  transit_keys = module.topology.transit_keys
  roles        = module.topology.vault_roles
  person_roles = module.topology.person_roles
}

module "open_data_bucket" {
  source    = "../../modules/open-data-bucket"
  providers = { aws = aws.public }

  bucket            = var.open_data_bucket
  access_log_bucket = var.public_access_log_bucket
}

module "audit_bucket" {
  source    = "../../modules/audit-bucket"
  providers = { aws = aws.private }

  bucket            = var.audit_bucket
  access_log_bucket = var.private_access_log_bucket
}
