package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/tidwall/gjson"

	"github.com/kinlog/kinlog/internal/conf"
	"github.com/kinlog/kinlog/producer"
)

// runProduce ships lines from stdin or files to a stream, one record per line.
func runProduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	stream := fs.String("stream", os.Getenv("KINLOG_STREAM"), "stream name or ARN (default $KINLOG_STREAM)")
	keyField := fs.String("partition-key-field", "", "JSON member whose value is the partition key (default: random, for an even spread)")
	aggregate := fs.Bool("aggregate", true, "KPL-aggregate records")
	maxRecord := fs.Int("max-record-size", producer.DefaultMaxRecordSize, "largest record accepted, in bytes")
	ttl := fs.Duration("record-ttl", producer.DefaultRecordTTL, "give up on a record not delivered within this time; 0: never (the default with --spool)")
	spoolDir := fs.String("spool", "", "keep every accepted line in this directory until Kinesis confirmed it; lines left by an earlier run are sent first")
	spoolSync := fs.String("spool-sync", producer.SyncWrite.String(), "when a spooled line is on disk: write (survives a crash of the process), fsync (and of the machine), batched (every 100 ms)")
	progress := fs.Duration("progress", 0, "print a progress line to stderr this often (sent, rate, buffered, failed); 0: none")
	spoolMax := conf.ByteSize(producer.DefaultSpoolMaxBytes)
	fs.TextVar(&spoolMax, "spool-max-bytes", spoolMax, "bound of the spool's files (5MiB, 2GiB, ...); reading waits while it is full")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	ttlSet := false
	fs.Visit(func(f *flag.Flag) { ttlSet = ttlSet || f.Name == "record-ttl" })
	if *stream == "" {
		return fmt.Errorf("%w: --stream is required", errUsage)
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS config: %w", err)
	}
	var (
		mu       sync.Mutex
		failed   int
		firstErr error
	)
	opts := []producer.Option{producer.WithAggregation(*aggregate), producer.WithMaxRecordSize(*maxRecord)}
	if *spoolDir != "" {
		mode, err := producer.ParseSpoolSync(*spoolSync)
		if err != nil {
			return fmt.Errorf("%w: --spool-sync: %v", errUsage, err)
		}
		opts = append(opts, producer.WithSpool(*spoolDir, producer.SpoolOptions{Sync: mode, MaxBytes: int64(spoolMax)}))
		if !ttlSet {
			*ttl = 0
		}
	}
	if *spoolDir == "" || ttlSet {
		opts = append(opts, producer.WithRecordTTL(*ttl))
	}
	p, err := producer.New(kinesis.NewFromConfig(cfg), *stream, append(opts,
		producer.WithResultHandler(func(r producer.Result) {
			if r.Err == nil {
				return
			}
			mu.Lock()
			failed++
			if firstErr == nil {
				firstErr = r.Err
			}
			mu.Unlock()
		}))...)
	if err != nil {
		return err
	}
	if r, ok := p.SpoolRecovery(); ok {
		if r.Records > 0 {
			fmt.Fprintf(stderr, "kinlog produce: sending first %d lines an earlier run left in %s\n", r.Records, r.Dir)
		}
		for _, d := range r.Damaged {
			fmt.Fprintf(stderr, "kinlog produce: spool file %s damaged at byte %d (%s): %d bytes cut off, kept in %s\n", d.File, d.Offset, d.Reason, d.Bytes, d.SavedAs)
		}
	}
	start := time.Now()
	if *progress > 0 {
		stopProgress := make(chan struct{})
		defer close(stopProgress)
		go func() {
			tick := time.NewTicker(*progress)
			defer tick.Stop()
			last, lastAt := uint64(0), start
			for {
				select {
				case <-stopProgress:
					return
				case now := <-tick.C:
					st := p.Stats()
					rate := float64(st.RecordsDelivered-last) / now.Sub(lastAt).Seconds()
					fmt.Fprintf(stderr, "kinlog produce: %d sent (%.0f/s), %d buffered, %d failed, %s\n",
						st.RecordsDelivered, rate, st.BufferedRecords, st.RecordsFailed, now.Sub(start).Round(time.Second))
					last, lastAt = st.RecordsDelivered, now
				}
			}
		}()
	}
	rejected := 0
	var readErr error
	for _, name := range files {
		if err := produceFile(ctx, p, name, *keyField, *maxRecord, stderr, &rejected); err != nil {
			readErr = err
			break
		}
	}
	// Without a TTL (the default with a spool) Close waits 30 s for Kinesis; what is not
	// delivered by then stays in the spool for the next run.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *ttl+30*time.Second)
	defer cancel()
	closeErr := p.Close(closeCtx)
	st := p.Stats()
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(stdout, "sent %d records in %d Kinesis records (%.1f per record) in %s; %d failed, %d rejected\n",
		st.RecordsDelivered, st.KinesisRecords, float64(st.RecordsDelivered)/max(1, float64(st.KinesisRecords)),
		elapsed.Round(time.Millisecond), failed, rejected)
	// Close reports a delivery error whenever a record failed; the counts say more.
	switch {
	case readErr != nil && errors.Is(readErr, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(stderr, "kinlog produce: stopped by a signal; what was read is delivered (or, with --spool, kept in the spool)")
		return nil
	case readErr != nil:
		return readErr
	case failed > 0:
		return fmt.Errorf("%d records failed to deliver, %d rejected; first error: %w", failed, rejected, firstErr)
	case rejected > 0:
		return fmt.Errorf("%d records rejected", rejected)
	case closeErr != nil:
		return fmt.Errorf("closing producer: %w", closeErr)
	}
	return nil
}

// produceFile puts the lines of the named file (or stdin, "-"). The file is read in its own
// goroutine, so that a signal (ctx ending) stops produce at once even while a read blocks —
// on a terminal or a pipe that stays open: what was read is still delivered.
func produceFile(ctx context.Context, p *producer.Producer, name, keyField string, maxRecord int, stderr io.Writer, rejected *int) error {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	lines := make(chan []byte, 1024)
	readErr := make(chan error, 1)
	go func() { readErr <- readLines(r, maxRecord, lines) }()
	line := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case data, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					return fmt.Errorf("reading %s: %w", name, err)
				}
				return nil
			}
			line++
			if len(data) == 0 {
				continue
			}
			if perr := p.Put(ctx, producer.Record{PartitionKey: partitionKey(data, keyField), Data: data}); perr != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				*rejected++
				fmt.Fprintf(stderr, "kinlog produce: %s:%d: %v\n", name, line, perr)
			}
		}
	}
}

// readLines sends each line of r (without its line ending; a line longer than maxRecord+1
// bytes is cut there, so that Put rejects it) to out and closes it at the end.
func readLines(r io.Reader, maxRecord int, out chan<- []byte) error {
	defer close(out)
	br := bufio.NewReaderSize(r, 256<<10)
	var rec []byte
	for {
		chunk, err := br.ReadSlice('\n')
		rec = append(rec, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(rec) > maxRecord+1 {
				// Keep reading to the end of the line, but do not hold it.
				rec = rec[:maxRecord+2]
			}
			continue
		}
		if len(rec) > 0 {
			data := rec
			if data[len(data)-1] == '\n' {
				data = data[:len(data)-1]
			}
			if len(data) > 0 && data[len(data)-1] == '\r' {
				data = data[:len(data)-1]
			}
			out <- append([]byte(nil), data...)
			rec = rec[:0]
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func partitionKey(data []byte, field string) string {
	if field != "" {
		if v := gjson.GetBytes(data, field); v.Exists() && v.String() != "" {
			k := v.String()
			if r := []rune(k); len(r) > producer.MaxPartitionKeyLength {
				k = string(r[:producer.MaxPartitionKeyLength])
			}
			return k
		}
	}
	return strconv.FormatUint(rand.Uint64(), 36)
}
