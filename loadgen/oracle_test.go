package loadgen

import (
	"strconv"
	"strings"
	"testing"
)

// ev builds a valid JSON record of user u; seq 0 leaves the sequence out.
func ev(id, u string, seq int64) Record {
	v := `{"id":"` + id + `","type":"user.activity","timestamp":"2026-11-22T10:00:00Z"`
	if seq > 0 {
		v += `,"sequence":` + strconv.FormatInt(seq, 10)
	}
	return Record{Key: []byte(u), Value: []byte(v + `}`), ID: id, User: u, Sequence: seq}
}

func TestOracleOrder(t *testing.T) {
	bad := Record{Key: []byte("u"), Value: []byte(`{"id":1}`), Kind: Malformed}
	for _, tc := range []struct {
		name                    string
		in                      []Record
		want                    string // applied IDs of user u
		valid, dups, mal, buffd int
	}{
		{"in order", []Record{ev("a", "u", 1), ev("b", "u", 2), ev("c", "u", 3)}, "a b c", 3, 0, 0, 0},
		{"reordered", []Record{ev("b", "u", 2), ev("c", "u", 3), ev("a", "u", 1)}, "a b c", 3, 0, 0, 0},
		{"unsequenced applies during a gap", []Record{ev("b", "u", 2), ev("x", "u", 0), ev("a", "u", 1)}, "x a b", 3, 0, 0, 0},
		{"duplicate of a buffered event", []Record{ev("b", "u", 2), ev("b", "u", 2), ev("a", "u", 1)}, "a b", 2, 1, 0, 0},
		{"duplicate after apply", []Record{ev("a", "u", 1), ev("x", "u", 0), ev("a", "u", 1), ev("x", "u", 0)}, "a x", 2, 2, 0, 0},
		{"malformed counted, not applied", []Record{bad, ev("a", "u", 1), bad}, "a", 1, 0, 2, 0},
		{"gap never filled", []Record{ev("a", "u", 1), ev("c", "u", 3)}, "a", 2, 0, 0, 1},
		{"late new ID is not applied", []Record{ev("a", "u", 1), ev("b", "u", 2), ev("z", "u", 1)}, "a b", 3, 0, 0, 0},
		{"other users do not interfere", []Record{ev("b", "u", 2), ev("v1", "v", 1), ev("a", "u", 1)}, "a b", 3, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOracle()
			for _, r := range tc.in {
				o.Observe(r)
			}
			var ids []string
			for _, e := range o.Events("u") {
				ids = append(ids, e.ID)
			}
			if got := strings.Join(ids, " "); got != tc.want {
				t.Errorf("Events(u) = %q, want %q", got, tc.want)
			}
			if o.Valid() != tc.valid || o.Duplicates() != tc.dups || o.Malformed() != tc.mal || o.Buffered() != tc.buffd {
				t.Errorf("valid %d dups %d malformed %d buffered %d; want %d %d %d %d",
					o.Valid(), o.Duplicates(), o.Malformed(), o.Buffered(), tc.valid, tc.dups, tc.mal, tc.buffd)
			}
		})
	}
	if NewOracle().Events("nobody") != nil {
		t.Error("Events of an unknown user is not nil")
	}
}

func TestOracleOnGeneratedStream(t *testing.T) {
	cfg := mixed(20000, 9)
	cfg.Users = 300
	rs := generate(t, cfg)
	o := NewOracle()
	var kinds [3]int
	unseqOrder := make(map[string][]string) // per user, unsequenced IDs in emission order
	for _, r := range rs {
		o.Observe(r)
		kinds[r.Kind]++
		if r.Kind == Valid && r.Sequence == 0 {
			unseqOrder[r.User] = append(unseqOrder[r.User], r.ID)
		}
	}
	if o.Valid() != kinds[Valid] || o.Duplicates() != kinds[Duplicate] || o.Malformed() != kinds[Malformed] {
		t.Fatalf("oracle valid %d dups %d malformed %d; stream has %v", o.Valid(), o.Duplicates(), o.Malformed(), kinds)
	}
	if o.Buffered() != 0 {
		t.Fatalf("%d events left buffered", o.Buffered())
	}
	users := o.Users()
	if len(users) != cfg.Users {
		t.Fatalf("%d users, want %d", len(users), cfg.Users)
	}
	total := 0
	for _, u := range users {
		evs := o.Events(u)
		total += len(evs)
		next := int64(1)
		var unseq []string
		for _, e := range evs {
			if e.AggregateID != u {
				t.Fatalf("user %s has an event of %s", u, e.AggregateID)
			}
			if e.Sequence == 0 {
				unseq = append(unseq, e.ID)
				continue
			}
			if e.Sequence != next {
				t.Fatalf("user %s: sequence %d applied where %d was next", u, e.Sequence, next)
			}
			next++
		}
		if strings.Join(unseq, " ") != strings.Join(unseqOrder[u], " ") {
			t.Fatalf("user %s: unsequenced events applied out of emission order", u)
		}
	}
	if total != o.Valid() {
		t.Fatalf("%d events applied, %d valid", total, o.Valid())
	}
}
