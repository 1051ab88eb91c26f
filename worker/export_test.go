package worker

import "github.com/streamworker/streamworker/topics"

// ClientClosed is closed once the worker's Kafka client has closed (Run
// may return before, when Kafka does not answer).
func (w *Worker) ClientClosed() <-chan struct{} { return w.clientClosed }

// SetApplyHook sets applyHook for the test and removes it when the test ends.
func SetApplyHook(cleanup func(func()), f func(*topics.Event)) {
	applyHook = f
	cleanup(func() { applyHook = nil })
}

// Queued returns the polls waiting in the queue of the input partition id
// (0 when the worker does not own it).
func (w *Worker) Queued(id int32) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.parts[id]; p != nil {
		return len(p.queue)
	}
	return 0
}

// StopRequested returns a function that reports whether the goroutine of
// the input partition id, owned now, was asked to stop (false when the
// worker does not own it).
func (w *Worker) StopRequested(id int32) func() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.parts[id]; p != nil {
		return p.stopping
	}
	return func() bool { return false }
}
