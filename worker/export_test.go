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
