package worker

import "github.com/streamworker/streamworker/topics"

// SetApplyHook sets applyHook for the test and removes it when the test ends.
func SetApplyHook(cleanup func(func()), f func(*topics.Event)) {
	applyHook = f
	cleanup(func() { applyHook = nil })
}
