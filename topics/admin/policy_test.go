package admin

import "testing"

func TestSamePolicy(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"compact", "compact", true},
		{"compact,delete", "delete, compact", true},
		{"delete", "delete,delete", true},
		{"compact", "compact,delete", false},
		{"delete", "compact", false},
		{"", "delete", false},
	}
	for _, tt := range tests {
		if got := samePolicy(tt.a, tt.b); got != tt.same {
			t.Errorf("samePolicy(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}
