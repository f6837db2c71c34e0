// Package query reads the kinlog archive and analytics rollups back from S3: partition
// pruning by time, filters, projections and aggregates.
package query
