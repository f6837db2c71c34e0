// Command vmware-drain is a peer benchmark for kinlog's consumer: it drains a Kinesis
// stream with vmware-go-kcl-v2 (polling consumer, DynamoDB lease table) and a no-op
// record processor, and prints one JSON line with the drain time, peak RSS and CPU time.
//
// It also has a -fill mode that creates a stream and puts plain (non-aggregated) records
// into it, and a -delete mode that removes the stream and the lease table.
//
// It is its own Go module so that vmware-go-kcl-v2 and the older AWS SDK it pins stay out
// of kinlog's go.mod. See README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// peerName is the library and version this program measures; keep it in step with go.mod.
const peerName = "vmware-go-kcl-v2 v1.0.0"

func main() {
	var (
		stream  = flag.String("stream", "", "stream name (drain: must exist; -fill creates it if missing)")
		records = flag.Int64("records", 0, "drain: total user records expected; the program exits when this many were processed")
		table   = flag.String("table", "", "drain: lease table (created by KCL if missing; also the KCL application name); -delete: table to delete too")
		workers = flag.Int("workers", 1, "drain: number of KCL workers in this process (each its own Worker and worker id)")
		timeout = flag.Duration("timeout", 10*time.Minute, "drain: give up with an error after this long")

		maxRecords = flag.Int("max-records", 10000, "drain: GetRecords Limit (KCL MaxRecords)")
		idle       = flag.Duration("idle", time.Second, "drain: KCL IdleTimeBetweenReadsInMillis (sleep after an empty GetRecords)")
		shardSync  = flag.Duration("shard-sync", time.Second, "drain: KCL ShardSyncIntervalMillis (the worker loop period; it takes at most one lease per loop)")
		logLevel   = flag.String("log-level", "warn", "drain: logrus level for KCL's logs (stderr)")

		fill        = flag.Int("fill", 0, "fill mode: put this many records into -stream and exit")
		shards      = flag.Int("shards", 4, "fill mode: shard count when the stream is created")
		size        = flag.Int("size", 230, "fill mode: bytes per record (a JSON line ending in \\n)")
		concurrency = flag.Int("concurrency", 4, "fill mode: PutRecords calls in flight")
		del         = flag.Bool("delete", false, "delete -stream (and -table if given) and exit")
	)
	flag.Parse()

	if *stream == "" {
		fatalf("-stream is required")
	}
	env, err := loadEnv()
	if err != nil {
		fatalf("%v", err)
	}

	switch {
	case *del:
		err = deleteAll(env, *stream, *table)
	case *fill > 0:
		err = fillStream(env, *stream, *shards, *fill, *size, *concurrency)
	default:
		if *records <= 0 || *table == "" || *workers < 1 {
			fatalf("drain needs -records N (>0), -table NAME and -workers >= 1")
		}
		err = drain(env, drainConfig{
			stream:     *stream,
			table:      *table,
			records:    *records,
			workers:    *workers,
			timeout:    *timeout,
			maxRecords: *maxRecords,
			idle:       *idle,
			shardSync:  *shardSync,
			logLevel:   *logLevel,
		})
	}
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmware-drain: "+format+"\n", args...)
	os.Exit(1)
}

// stackEnv is what `infra/local/stack env` exports and this program uses.
type stackEnv struct {
	region, accessKey, secretKey string
	kinesisEndpoint              string
	dynamoEndpoint               string
}

func loadEnv() (stackEnv, error) {
	e := stackEnv{
		region:          os.Getenv("AWS_REGION"),
		accessKey:       os.Getenv("AWS_ACCESS_KEY_ID"),
		secretKey:       os.Getenv("AWS_SECRET_ACCESS_KEY"),
		kinesisEndpoint: os.Getenv("AWS_ENDPOINT_URL_KINESIS"),
		dynamoEndpoint:  os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"),
	}
	if e.region == "" {
		e.region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if e.region == "" || e.accessKey == "" || e.secretKey == "" {
		return e, fmt.Errorf("AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (eval \"$(infra/local/stack env)\")")
	}
	if e.kinesisEndpoint == "" || e.dynamoEndpoint == "" {
		return e, fmt.Errorf("AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB must be set (eval \"$(infra/local/stack env)\")")
	}
	return e, nil
}
