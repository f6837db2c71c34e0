# The Glue catalog table Athena queries the archive through.
#
# kinlog's default prefix is logs/dt=YYYY-MM-DD/hour=HH/ (sinks/s3), so the table has two
# partition columns, dt (date projection) and hour (integer projection, two digits), and
# Athena computes partition locations from storage.location.template instead of listing or
# registering partitions. Objects are NDJSON, gzip-compressed (.json.gz); Hive's text input
# format decompresses by file extension, and the OpenX JSON SerDe maps top-level fields to
# columns by name.

resource "aws_glue_catalog_database" "this" {
  name        = local.glue_database_name
  description = "kinlog log archive in s3://${local.bucket_name}/${var.archive_prefix}"
}

resource "aws_glue_catalog_table" "logs" {
  name          = var.glue_table_name
  database_name = aws_glue_catalog_database.this.name
  description   = "kinlog NDJSON archive, partitioned by dt (yyyy-MM-dd) and hour (00-23), UTC."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "EXTERNAL"       = "TRUE"
    "classification" = "json"

    "projection.enabled" = "true"

    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "${var.partition_projection_start},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"

    "projection.hour.type"   = "integer"
    "projection.hour.range"  = "0,23"
    "projection.hour.digits" = "2"

    # $${dt} is terraform's escape for a literal ${dt}, which Athena fills in per partition.
    "storage.location.template" = "s3://${aws_s3_bucket.archive.bucket}/${var.archive_prefix}dt=$${dt}/hour=$${hour}/"
  }

  partition_keys {
    name    = "dt"
    type    = "string"
    comment = "UTC day of the records' time, yyyy-MM-dd"
  }

  partition_keys {
    name    = "hour"
    type    = "int"
    comment = "UTC hour of the records' time, 0-23"
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.archive.bucket}/${var.archive_prefix}"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      name                  = "openx-json"
      serialization_library = "org.openx.data.jsonserde.JsonSerDe"
      parameters = {
        # A line that is not valid JSON reads as a row of NULLs instead of failing the query.
        "ignore.malformed.json" = "true"
        "case.insensitive"      = "true"
      }
    }

    dynamic "columns" {
      for_each = var.glue_columns
      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}
