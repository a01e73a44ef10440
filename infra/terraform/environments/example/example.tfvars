# Endpoints of one deployment. No credential belongs here: see variables.tf for the environment variables.
private_bootstrap_servers = ["kafka-1.private.example.gov:9093", "kafka-2.private.example.gov:9093", "kafka-3.private.example.gov:9093"]
public_bootstrap_servers  = ["kafka-1.public.example.gov:9093", "kafka-2.public.example.gov:9093", "kafka-3.public.example.gov:9093"]
private_kafka_username    = "hbus-terraform"
public_kafka_username     = "hbus-terraform"

vault_address = "https://vault.private.example.gov:8200"

aws_region                = "ap-east-1"
private_s3_endpoint       = "https://s3.private.example.gov"
private_s3_region         = "private-1"
public_access_log_bucket  = "example-gov-public-access-logs"
private_access_log_bucket = "example-gov-private-access-logs"
