output "topic_names" {
  description = "Every topic this module manages."
  value       = sort([for topic in kafka_topic.this : topic.name])
}
