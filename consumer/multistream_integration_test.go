package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kinlog/kinlog/checkpoint"
	"github.com/kinlog/kinlog/internal/testenv"
)

// rawItems returns the table's items by leaseKey, as DynamoDB stores them.
func rawItems(t *testing.T, dc *ddb.Client, table string) map[string]map[string]ddbtypes.AttributeValue {
	t.Helper()
	out, err := dc.Scan(context.Background(), &ddb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]map[string]ddbtypes.AttributeValue{}
	for _, it := range out.Items {
		m[it["leaseKey"].(*ddbtypes.AttributeValueMemberS).Value] = it
	}
	return m
}

func attrS(it map[string]ddbtypes.AttributeValue, name string) string {
	if v, ok := it[name].(*ddbtypes.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// itemString renders an item with its attributes in order, values and not pointers.
func itemString(it map[string]ddbtypes.AttributeValue) string {
	names := slices.Sorted(maps.Keys(it))
	var sb strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sb, "%s=%v ", n, it[n])
	}
	return sb.String()
}

// distinctData returns the distinct record data a procLog received.
func distinctData(p *procLog) map[string]bool {
	m := map[string]bool{}
	for _, r := range p.records("") {
		m[string(r.Data)] = true
	}
	return m
}

// TestIntegrationMultiStream: two workers read two streams through one lease table in the
// KCL's multi-stream layout. Each stream's records reach only its own processors, the
// leases are keyed account:stream:epoch:shardId with the KCL's streamName and shardId
// attributes, each stream is balanced over both workers, the metrics carry a stream label,
// and the items of the table that are not these streams' leases — single-stream leases,
// another stream's, the same name's from an earlier incarnation of the stream, a KCL 3.x
// entity item — are never touched. Then the list changes between restarts: one stream
// removed, one added. The removed stream's leases keep their values, the added stream is
// read from the start, and the kept one resumes from its checkpoints.
func TestIntegrationMultiStream(t *testing.T) {
	kc := testenv.KinesisClient(t)
	dc := testenv.DynamoDBClient(t)
	store, table := leaseTable(t)
	a, b, c := testenv.Name(t, "msa"), testenv.Name(t, "msb"), testenv.Name(t, "msc")
	testenv.CreateStream(t, kc, a, 2)
	testenv.CreateStream(t, kc, b, 1)
	testenv.CreateStream(t, kc, c, 1)
	idA, err := DescribeStreamID(context.Background(), kc, a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(idA, "000000000000:"+a+":") {
		t.Fatalf("stream id %q, want kinesalite's account, the stream name and its creation epoch", idA)
	}
	epoch := strings.TrimPrefix(idA, "000000000000:"+a+":")

	foreign := []map[string]ddbtypes.AttributeValue{
		{"leaseKey": &ddbtypes.AttributeValueMemberS{Value: "shardId-000000000000"}, "leaseCounter": &ddbtypes.AttributeValueMemberN{Value: "4"},
			"checkpoint": &ddbtypes.AttributeValueMemberS{Value: "49590338271490256608559692538361571095921575989136588898"}, "leaseOwner": &ddbtypes.AttributeValueMemberS{Value: "single-stream-kcl"}},
		{"leaseKey": &ddbtypes.AttributeValueMemberS{Value: "123456789012:" + a + ":1:shardId-000000000000"}, "leaseCounter": &ddbtypes.AttributeValueMemberN{Value: "6"},
			"checkpoint": &ddbtypes.AttributeValueMemberS{Value: "SHARD_END"}, "streamName": &ddbtypes.AttributeValueMemberS{Value: "123456789012:" + a + ":1"}},
		{"leaseKey": &ddbtypes.AttributeValueMemberS{Value: "000000000000:" + a + ":1:shardId-000000000001"}, "leaseCounter": &ddbtypes.AttributeValueMemberN{Value: "8"},
			"checkpoint": &ddbtypes.AttributeValueMemberS{Value: "TRIM_HORIZON"}, "leaseOwner": &ddbtypes.AttributeValueMemberS{Value: "old-incarnation"}},
		{"leaseKey": &ddbtypes.AttributeValueMemberS{Value: "Migration3.0"}, "entityType": &ddbtypes.AttributeValueMemberS{Value: "MIGRATION"},
			"leaseCounter": &ddbtypes.AttributeValueMemberN{Value: "2"}},
	}
	for _, item := range foreign {
		if _, err := dc.PutItem(context.Background(), &ddb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}

	var entriesA, entriesB, entriesC []ktypes.PutRecordsRequestEntry
	for i := range 300 {
		entriesA = append(entriesA, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("%s-%d", a, i)))
	}
	for i := range 100 {
		entriesB = append(entriesB, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("%s-%d", b, i)))
		entriesC = append(entriesC, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("%s-%d", c, i)))
	}
	putAll(t, kc, a, entriesA)
	putAll(t, kc, b, entriesB)
	putAll(t, kc, c, entriesC)

	logs := map[string]*procLog{a: newProcLog(true), b: newProcLog(true), c: newProcLog(true)}
	var initMu sync.Mutex
	inits := map[string]string{} // stream given to Initialize, by the stream the factory is for
	for name, pl := range logs {
		pl.onInit = func(_ context.Context, in InitInput) error {
			initMu.Lock()
			defer initMu.Unlock()
			if prev, ok := inits[name]; ok && prev != in.Stream {
				t.Errorf("stream %s: Initialize saw stream %q and %q", name, prev, in.Stream)
			}
			inits[name] = in.Stream
			return nil
		}
	}
	reg := prometheus.NewRegistry()
	worker := func(id string, r prometheus.Registerer, names ...string) *MultiStream {
		var ss []Stream
		for _, n := range names {
			ss = append(ss, Stream{Name: n, Factory: logs[n].factory()})
		}
		opts := []Option{WithWorkerID(id), WithFailoverTime(time.Second), WithShardSyncInterval(200 * time.Millisecond), WithLogger(integrationLogger(t))}
		if r != nil {
			opts = append(opts, WithRegisterer(r))
		}
		m, err := NewMultiStream(kc, store, ss, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	w1 := worker("w1", reg, a, b)
	w2 := worker("w2", nil, a, b)
	stop1, stop2 := started(t, w1), started(t, w2)
	eventually(t, 60*time.Second, "every record of both streams delivered", func() bool {
		return len(distinctData(logs[a])) == 300 && len(distinctData(logs[b])) == 100
	})
	for name, pl := range logs {
		for d := range distinctData(pl) {
			if !strings.HasPrefix(d, name+"-") {
				t.Fatalf("stream %s's processors got %q", name, d)
			}
		}
	}
	// Each stream is balanced over the workers: a's two shards go one to each.
	eventually(t, 30*time.Second, "stream a's shards held one by each worker", func() bool {
		owners := map[string]int{}
		for key, it := range rawItems(t, dc, table) {
			if strings.HasPrefix(key, idA+":") {
				owners[attrS(it, "leaseOwner")]++
			}
		}
		return owners["w1"] == 1 && owners["w2"] == 1
	})
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	initMu.Lock()
	if inits[a] != a || inits[b] != b {
		t.Errorf("InitInput.Stream: %v, want each stream's name", inits)
	}
	initMu.Unlock()

	// The leases: KCL multi-stream keys and attributes, checkpoints at the end of what was read.
	items := rawItems(t, dc, table)
	own := map[string]int{}
	for key, it := range items {
		streamID, shardID, ok := checkpoint.ParseMultiStreamKey(key)
		if !ok || (streamID != idA && !strings.HasPrefix(streamID, "000000000000:"+b+":")) {
			continue
		}
		own[streamID]++
		if attrS(it, "streamName") != streamID || attrS(it, "shardId") != shardID {
			t.Errorf("lease %s: streamName %q, shardId %q; want the KCL's attributes %q, %q", key, attrS(it, "streamName"), attrS(it, "shardId"), streamID, shardID)
		}
		if cp := attrS(it, "checkpoint"); !isSequence(cp) {
			t.Errorf("lease %s: checkpoint %q after every record was acknowledged, want a sequence number", key, cp)
		}
	}
	if own[idA] != 2 || len(own) != 2 {
		t.Fatalf("leases per stream id: %v, want 2 for %s and 1 for %s", own, idA, b)
	}
	for _, item := range foreign {
		key := attrS(item, "leaseKey")
		got, ok := items[key]
		if !ok {
			t.Fatalf("foreign item %s deleted", key)
		}
		for name, v := range item {
			if fmt.Sprint(got[name]) != fmt.Sprint(v) {
				t.Errorf("foreign item %s: %s is %v, was %v", key, name, got[name], v)
			}
		}
	}

	// Per-stream metrics from one registry.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labelled := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "kinlog_consumer_records_processed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "stream" {
					labelled[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if _, ok := labelled[a]; !ok {
		t.Errorf("records_processed_total has no series for stream %s: %v", a, labelled)
	}
	if _, ok := labelled[b]; !ok {
		t.Errorf("records_processed_total has no series for stream %s: %v", b, labelled)
	}

	// Restart with b removed and c added; a gets new records.
	var bLeases []string
	for key := range items {
		if strings.HasPrefix(key, "000000000000:"+b+":") {
			bLeases = append(bLeases, key)
		}
	}
	var more []ktypes.PutRecordsRequestEntry
	for i := 300; i < 400; i++ {
		more = append(more, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("%s-%d", a, i)))
	}
	putAll(t, kc, a, more)
	deliveredA := len(logs[a].records(""))
	w3 := worker("w3", nil, a, c)
	stop3 := started(t, w3)
	eventually(t, 60*time.Second, "a's new records and every record of c delivered", func() bool {
		return len(distinctData(logs[a])) == 400 && len(distinctData(logs[c])) == 100
	})
	if err := stop3(); err != nil {
		t.Fatal(err)
	}
	if got := len(logs[a].records("")) - deliveredA; got != 100 {
		t.Errorf("after the restart a delivered %d records, want the 100 new ones (resumed from its checkpoints)", got)
	}
	after := rawItems(t, dc, table)
	for _, key := range bLeases {
		if itemString(after[key]) != itemString(items[key]) {
			t.Errorf("removed stream's lease %s changed:\n%s\nwas\n%s", key, itemString(after[key]), itemString(items[key]))
		}
	}
	idC, err := DescribeStreamID(context.Background(), kc, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := after[idC+":shardId-000000000000"]; !ok {
		t.Errorf("added stream %s has no lease %s", c, idC+":shardId-000000000000")
	}
	t.Logf("stream ids: %s (epoch %s); leases per stream %v", idA, epoch, own)
}

// TestIntegrationMultiStreamMissingStream: a stream that does not exist fails Run with the
// stream named, and no lease is written for the others.
func TestIntegrationMultiStreamMissingStream(t *testing.T) {
	kc := testenv.KinesisClient(t)
	store, _ := leaseTable(t)
	a := testenv.Name(t, "msok")
	testenv.CreateStream(t, kc, a, 1)
	missing := testenv.Name(t, "msmissing")
	pl := newProcLog(true)
	m, err := NewMultiStream(kc, store, []Stream{{Name: a, Factory: pl.factory()}, {Name: missing, Factory: pl.factory()}}, WithLogger(integrationLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.Run(ctx)
	var rnf *ktypes.ResourceNotFoundException
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.As(err, &rnf) {
		t.Fatalf("Run = %v, want a ResourceNotFoundException naming %s", err, missing)
	}
	if ls, err := store.ListLeases(context.Background()); err != nil || len(ls) != 0 {
		t.Fatalf("table holds %v (%v), want nothing", ls, err)
	}
}

// describeCounter counts DescribeStreamSummary calls of a real client.
type describeCounter struct {
	*kinesis.Client
	n atomic.Int64
}

func (d *describeCounter) DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, opts ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	d.n.Add(1)
	return d.Client.DescribeStreamSummary(ctx, in, opts...)
}

// TestIntegrationMultiStreamKinesisDownAtStart: Kinesis is unreachable (a proxy that
// refuses connections) when the worker starts. Describing the streams fails and is retried
// with backoff instead of ending Run; once Kinesis is back the worker takes the streams'
// leases and reads their records.
func TestIntegrationMultiStreamKinesisDownAtStart(t *testing.T) {
	kc := testenv.KinesisClient(t)
	store, _ := leaseTable(t)
	stream := testenv.Name(t, "msdown")
	testenv.CreateStream(t, kc, stream, 1)
	putAll(t, kc, stream, []ktypes.PutRecordsRequestEntry{entry("k", stream+"-0"), entry("k", stream+"-1")})
	proxy := testenv.NewFaultProxy(t, testenv.Kinesis)
	via := &describeCounter{Client: kinesis.NewFromConfig(testenv.AWSConfig(t), func(o *kinesis.Options) {
		o.BaseEndpoint = &proxy.URL
		o.RetryMaxAttempts = 1
	})}
	proxy.Down()
	pl := newProcLog(true)
	m, err := NewMultiStream(via, store, []Stream{{Name: stream, Factory: pl.factory()}}, WithFailoverTime(time.Second), WithLogger(integrationLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	stop := started(t, m)
	eventually(t, 30*time.Second, "three failed attempts to describe the stream", func() bool { return via.n.Load() >= 3 })
	if ls, err := store.ListLeases(context.Background()); err != nil || len(ls) != 0 {
		t.Fatalf("leases %v (%v) while Kinesis is down, want none", ls, err)
	}
	proxy.Up()
	eventually(t, 30*time.Second, "both records delivered once Kinesis is back", func() bool { return len(distinctData(pl)) == 2 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after a graceful stop", err)
	}
	id, err := DescribeStreamID(context.Background(), kc, stream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetLease(context.Background(), id+":shardId-000000000000"); err != nil {
		t.Fatalf("no multi-stream lease after the outage: %v", err)
	}
}
