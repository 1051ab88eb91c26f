package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWithPprofKeepsHealthAndAddsProfiles(t *testing.T) {
	plain := Handler(NewRegistry(), func() bool { return true })
	for _, tc := range []struct {
		h          http.Handler
		path       string
		want       int
		wantInBody string
	}{
		{plain, "/debug/pprof/", http.StatusNotFound, ""},
		{WithPprof(plain), "/debug/pprof/", http.StatusOK, "goroutine"},
		{WithPprof(plain), "/livez", http.StatusOK, "ok"},
		{WithPprof(plain), "/metrics", http.StatusOK, "go_goroutines"},
	} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != tc.want || !strings.Contains(string(body), tc.wantInBody) {
			t.Errorf("GET %s: %d, body %.80q; want %d containing %q", tc.path, rec.Code, body, tc.want, tc.wantInBody)
		}
	}
}
