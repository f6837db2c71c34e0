output "stream_name" {
  description = "Kinesis stream name (kinlog config: stream)."
  value       = aws_kinesis_stream.this.name
}

output "stream_arn" {
  description = "Kinesis stream ARN."
  value       = aws_kinesis_stream.this.arn
}

output "lease_table_name" {
  description = "DynamoDB lease table name (kinlog config: consumer.lease_table)."
  value       = aws_dynamodb_table.leases.name
}

output "lease_table_arn" {
  description = "DynamoDB lease table ARN."
  value       = aws_dynamodb_table.leases.arn
}

output "bucket_name" {
  description = "S3 archive bucket name (kinlog config: sink.s3.bucket)."
  value       = aws_s3_bucket.archive.bucket
}

output "bucket_arn" {
  description = "S3 archive bucket ARN."
  value       = aws_s3_bucket.archive.arn
}

output "kms_key_arn" {
  description = "KMS key that encrypts the stream (and the archive with SSE-KMS)."
  value       = local.kms_key_arn
}

output "producer_policy_arn" {
  description = "Managed policy with exactly the producer's permissions; attach it to your apps' roles."
  value       = aws_iam_policy.producer.arn
}

output "consumer_policy_arn" {
  description = "Managed policy with exactly the consumer's permissions."
  value       = aws_iam_policy.consumer.arn
}

output "reader_policy_arn" {
  description = "Managed policy with exactly the permissions of `kinlog query` on the archive."
  value       = aws_iam_policy.reader.arn
}

output "producer_role_arn" {
  description = "Producer role ARN, or null when nothing is trusted to assume it."
  value       = try(aws_iam_role.producer[0].arn, null)
}

output "consumer_role_arn" {
  description = "Consumer role ARN (the eks.amazonaws.com/role-arn annotation of the kinlog ServiceAccount), or null when nothing is trusted to assume it."
  value       = try(aws_iam_role.consumer[0].arn, null)
}

output "reader_role_arn" {
  description = "Reader role ARN, or null when nothing is trusted to assume it."
  value       = try(aws_iam_role.reader[0].arn, null)
}

output "glue_database_name" {
  description = "Glue database of the archive table."
  value       = aws_glue_catalog_database.this.name
}

output "glue_table_name" {
  description = "Glue table over the NDJSON archive, with partition projection on dt and hour."
  value       = aws_glue_catalog_table.logs.name
}

output "lambda_function_name" {
  description = "Name of the Lambda function (serverless mode), or null without lambda_zip."
  value       = try(aws_lambda_function.archiver[0].function_name, null)
}

output "lambda_role_arn" {
  description = "Execution role of the Lambda function, or null without lambda_zip."
  value       = try(aws_iam_role.lambda[0].arn, null)
}

output "lambda_policy_arn" {
  description = "Managed policy with exactly the Lambda function's permissions, or null without lambda_zip."
  value       = try(aws_iam_policy.lambda[0].arn, null)
}

output "lambda_progress_table_name" {
  description = "DynamoDB table of the function's progress per shard (KINLOG_PROGRESS_TABLE), or null without lambda_zip."
  value       = try(aws_dynamodb_table.lambda_progress[0].name, null)
}

output "lambda_failures_bucket_name" {
  description = "Bucket the event source mapping writes discarded batches to, for `kinlog replay`; null without lambda_zip."
  value       = try(aws_s3_bucket.lambda_failures[0].bucket, null)
}

output "lambda_event_source_mapping_uuid" {
  description = "UUID of the function's event source mapping on the stream, or null without lambda_zip."
  value       = try(aws_lambda_event_source_mapping.archiver[0].uuid, null)
}
