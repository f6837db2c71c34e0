package consumer

import "github.com/kinlog/kinlog/checkpoint"

// reader reads one held shard: the retrieval-specific half of a shard worker. It gets
// Kinesis records — by polling or through an enhanced fan-out subscription — and passes them
// through the worker's shared half: deaggregation and the skip of the checkpoint's
// sub-sequences ([shardWorker.userRecords]), delivery with its backpressure (batches in
// flight, the byte budget) and acknowledgements ([shardWorker.deliver]), the lag
// (shardWorker.lag) and, at the shard's end, its children (shardWorker.children). The
// worker does the rest — shard end, lease loss, shutdown, processor errors — from read's
// result.
type reader interface {
	// read reads the shard from start until it ends (nil; w.children names the children
	// when the reader learnt them), the worker's read context ends (its cause: lease lost,
	// shutdown) or the processor fails (*processorError).
	read(w *shardWorker, proc Processor, start checkpoint.Checkpoint) error
}

// pollingReader reads with GetShardIterator and GetRecords ([Polling]).
type pollingReader struct{}

func (pollingReader) read(w *shardWorker, proc Processor, start checkpoint.Checkpoint) error {
	return w.poll(proc, start, "")
}

// newReader returns the reader of the configured retrieval.
func (c *Consumer) newReader() reader {
	if c.cfg.retrieval == FanOut {
		return fanOutReader{}
	}
	return pollingReader{}
}
