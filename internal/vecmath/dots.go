package vecmath

// The inner products every exact score in the project goes through (the
// embedded index's exact and hybrid plans, the banks' embedding entries):
// one kernel, so that a vector gets the same score wherever it is scored.

// Dot returns the inner product of a and b (len(b) >= len(a)). Go does not
// auto-vectorise; four accumulators let the CPU overlap the multiply-adds.
func Dot(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= n; i += 8 {
		s0 += a[i]*b[i] + a[i+4]*b[i+4]
		s1 += a[i+1]*b[i+1] + a[i+5]*b[i+5]
		s2 += a[i+2]*b[i+2] + a[i+6]*b[i+6]
		s3 += a[i+3]*b[i+3] + a[i+7]*b[i+7]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Dot2 returns Dot(q, a) and Dot(q, b), bit for bit, in one pass: two
// independent memory streams let the CPU overlap their cache misses, which
// dominate when the vectors are scattered (the hybrid plan's candidates).
func Dot2(q, a, b []float32) (float32, float32) {
	n := len(q)
	a, b = a[:n], b[:n]
	var a0, a1, a2, a3, b0, b1, b2, b3 float32
	i := 0
	for ; i+8 <= n; i += 8 {
		a0 += q[i]*a[i] + q[i+4]*a[i+4]
		b0 += q[i]*b[i] + q[i+4]*b[i+4]
		a1 += q[i+1]*a[i+1] + q[i+5]*a[i+5]
		b1 += q[i+1]*b[i+1] + q[i+5]*b[i+5]
		a2 += q[i+2]*a[i+2] + q[i+6]*a[i+6]
		b2 += q[i+2]*b[i+2] + q[i+6]*b[i+6]
		a3 += q[i+3]*a[i+3] + q[i+7]*a[i+7]
		b3 += q[i+3]*b[i+3] + q[i+7]*b[i+7]
	}
	for ; i < n; i++ {
		a0 += q[i] * a[i]
		b0 += q[i] * b[i]
	}
	return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)
}

// Dots sets out[j] to the inner product of q with the vector at position
// pos[j] of base (vectors of len(q) floats, one after another), for
// scattered positions (the hybrid plan's candidates). With AVX-512 and a
// dimension that is a multiple of 64 it runs the assembly kernel, else Dot2
// on pairs (two memory streams overlap their cache misses; bit for bit Dot).
// Dots, DotsSeq and Score agree bit for bit, so a vector gets the same score
// whichever of them scores it. A position outside base panics.
func Dots(q, base []float32, pos []int32, out []float32) {
	dim := len(q)
	out = out[:len(pos)]
	if avxDots(dim) {
		n := int32(len(base) / dim)
		for _, p := range pos {
			if p < 0 || p >= n {
				panic("vecmath: Dots: position out of range")
			}
		}
		dotsAVX512(q, base, pos, out)
		return
	}
	vec := func(p int32) []float32 { return base[int(p)*dim : (int(p)+1)*dim] }
	j := 0
	for ; j+2 <= len(pos); j += 2 {
		out[j], out[j+1] = Dot2(q, vec(pos[j]), vec(pos[j+1]))
	}
	if j < len(pos) {
		out[j] = Dot(q, vec(pos[j]))
	}
}

// DotsSeq is Dots for the first len(out) vectors of base in order (an
// exact scan). The pure Go path is Dot per vector, faster than Dot2 when the
// hardware prefetchers follow the reads.
func DotsSeq(q, base []float32, out []float32) {
	dim := len(q)
	if avxDots(dim) {
		if len(base) < len(out)*dim {
			panic("vecmath: DotsSeq: base too short")
		}
		for lo := 0; lo < len(out); lo += len(iota32) {
			m := min(len(iota32), len(out)-lo)
			dotsAVX512(q, base[lo*dim:], iota32[:m], out[lo:lo+m])
		}
		return
	}
	for j := range out {
		out[j] = Dot(q, base[j*dim:(j+1)*dim])
	}
}

// Score is Dots for one vector.
func Score(q, v []float32) float32 {
	var out [1]float32
	Dots(q, v, []int32{0}, out[:])
	return out[0]
}

// HasAVX512Dots reports whether Dots runs the AVX-512 kernel for vectors of
// dim floats.
func HasAVX512Dots(dim int) bool { return avxDots(dim) }

// HasAVX2DotsColumns reports whether DotsColumns64 runs the AVX2 kernel
// (where it does not, it is slower than DotsSeq over the same rows).
func HasAVX2DotsColumns() bool { return hasAVX2FMA }

func avxDots(dim int) bool { return hasAVX512FMA && dim > 0 && dim%64 == 0 }

// iota32 holds 0, 1, 2, ... for sequential Dots.
var iota32 = func() []int32 {
	s := make([]int32, 256)
	for i := range s {
		s[i] = int32(i)
	}
	return s
}()

// DotsColumns64 sets out[r] to the inner product of q with row r of a
// block of 64 rows of len(q) components stored by column: component d of
// row r is cols[d*64+r]. It is for screens that bound scores, not for the
// scores themselves: its sums run in another order than Dots's (with FMA
// where the CPU has AVX2), so each is within the float32 rounding bound of
// the exact inner product (len(q)·2^-24·Σ|q[d]·row[d]| and a little more)
// but not bit for bit Dots. It panics if cols holds fewer than 64·len(q)
// floats.
func DotsColumns64(q, cols []float32, out *[64]float32) {
	if len(cols) < 64*len(q) {
		panic("vecmath: DotsColumns64: cols too short")
	}
	if hasAVX2FMA {
		dotsColumns64AVX2(q, cols, out)
		return
	}
	*out = [64]float32{}
	for d, a := range q {
		col := (*[64]float32)(cols[d*64 : d*64+64])
		for r, c := range col {
			out[r] += a * c
		}
	}
}
