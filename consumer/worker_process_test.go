package consumer

// maybeRunWorkerProcess runs this test binary as a consumer worker process when the
// integration tests start it as one, and reports whether it did.
func maybeRunWorkerProcess() bool { return false }
