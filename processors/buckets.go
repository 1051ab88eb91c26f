package processors

import "slices"

// buckets holds a user's rate-counted events per second: b[head:] ascending
// by second, each with the running total of events up to and including it
// (cum), counted from base. Running totals make a window count two binary
// searches and a subtraction; events in time order add at the end in O(1),
// an event into an earlier second updates the totals after it.
type buckets struct {
	b    []bucket
	head int   // b[:head] are pruned and waiting to be reused
	base int64 // the running total before b[head]
}

type bucket struct {
	sec int64 // floor(event time / 1s), in Unix seconds
	cum int64 // base + the events of every live bucket up to this one
}

// len returns the number of live buckets.
func (k *buckets) len() int { return len(k.b) - k.head }

// live returns the live buckets.
func (k *buckets) live() []bucket { return k.b[k.head:] }

// cumBefore returns the running total before live bucket i.
func (k *buckets) cumBefore(live []bucket, i int) int64 {
	if i == 0 {
		return k.base
	}
	return live[i-1].cum
}

// search returns the index of the first live bucket whose second is >= sec.
func search(live []bucket, sec int64) int {
	lo, hi := 0, len(live)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if live[m].sec < sec {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// add counts one event in second sec.
func (k *buckets) add(sec int64) {
	live := k.live()
	n := len(live)
	if n > 0 && live[n-1].sec == sec {
		live[n-1].cum++
		return
	}
	if n == 0 || live[n-1].sec < sec {
		if k.head > 0 && len(k.b) == cap(k.b) {
			k.compact()
		}
		k.b = append(k.b, bucket{sec: sec, cum: k.cumBefore(live, n) + 1})
		return
	}
	i := search(live, sec)
	if live[i].sec != sec {
		k.compact() // now head == 0 and live indexes equal slice indexes
		k.b = slices.Insert(k.b, i, bucket{sec: sec, cum: k.cumBefore(k.b, i)})
		live = k.b
	}
	for j := i; j < len(live); j++ {
		live[j].cum++
	}
}

// count returns the number of events in the seconds [lo, hi].
func (k *buckets) count(lo, hi int64) int64 {
	live := k.live()
	j := len(live) // one past the last bucket <= hi
	if j == 0 {
		return 0
	}
	if live[j-1].sec > hi {
		j = search(live, hi+1)
	}
	i := search(live[:j], lo)
	if i >= j {
		return 0
	}
	return live[j-1].cum - k.cumBefore(live, i)
}

// prune drops the buckets of seconds below lo.
func (k *buckets) prune(lo int64) {
	live := k.live()
	i := 0
	for i < len(live) && live[i].sec < lo {
		i++
	}
	switch {
	case i == 0:
	case i == len(live):
		k.b, k.head, k.base = k.b[:0], 0, 0
	default:
		k.base = live[i-1].cum
		k.head += i
		if k.head > 64 && k.head > len(k.b)/2 {
			k.compact()
		}
	}
}

// compact moves the live buckets to the front of the slice.
func (k *buckets) compact() {
	n := copy(k.b, k.b[k.head:])
	k.b = k.b[:n]
	k.head = 0
}

// counts returns the live buckets as (second, events) pairs.
func (k *buckets) counts() [][2]int64 {
	live := k.live()
	out := make([][2]int64, len(live))
	for i, b := range live {
		out[i] = [2]int64{b.sec, b.cum - k.cumBefore(live, i)}
	}
	return out
}
