terraform {
  required_version = ">= 1.5.0"
  required_providers {
    kafka = {
      source  = "Mongey/kafka"
      version = "0.12.1"
    }
    vault = {
      source  = "hashicorp/vault"
      version = "5.0.0"
    }
    aws = {
      source  = "hashicorp/aws"
      version = "6.0.0"
    }
  }
}
