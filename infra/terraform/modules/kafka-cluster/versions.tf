terraform {
  required_version = ">= 1.5.0"
  required_providers {
    kafka = {
      source  = "Mongey/kafka"
      version = "0.12.1"
    }
  }
}
