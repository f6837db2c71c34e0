// Package kpl encodes and decodes the KPL aggregated record format, shared by the producer
// and the consumer.
package kpl
