package processors

import "math/bits"

// u256 is an unsigned 256-bit integer, least significant limb first. The
// anomaly comparisons are products of at most five 64-bit factors whose
// sizes are bounded (see Processor.evaluate), so they never exceed 256 bits
// and comparing them needs neither floating point nor allocation.
type u256 [4]uint64

// mul returns x × y. The caller guarantees the product fits in 256 bits.
func (x u256) mul(y uint64) u256 {
	var z u256
	var carry uint64
	for i := range x {
		hi, lo := bits.Mul64(x[i], y)
		var c uint64
		z[i], c = bits.Add64(lo, carry, 0)
		carry = hi + c // cannot overflow: hi <= 2^64-2
	}
	return z
}

// cmp returns -1, 0 or +1 as x is less than, equal to or greater than y.
func (x u256) cmp(y u256) int {
	for i := len(x) - 1; i >= 0; i-- {
		switch {
		case x[i] < y[i]:
			return -1
		case x[i] > y[i]:
			return 1
		}
	}
	return 0
}

// prod2 returns a × b.
func prod2(a, b uint64) u256 { return u256{a}.mul(b) }
