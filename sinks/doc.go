// Package sinks holds the consumer processors that make records durable: the S3 archive
// (sinks/s3) and the analytics rollups written beside it.
package sinks
