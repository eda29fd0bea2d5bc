// The PDQ downsampler of filter.go for packed 8-bit RGB, in C: the same
// float32 operations in the same order (no contraction into fused
// multiply-adds: -ffp-contract=off), so the 64x64 plane is bit for bit the
// Go code's (TestDownsampleRGBMatchesGo), which is the reference's. The
// row filters are running sums, serial along a row, so sixteen rows go
// through them at once, in the four lanes of four vectors (each lane
// computes exactly the scalar operations of its row; several vectors,
// because one running sum is bound by the latency of its additions); rows
// move in and out of that layout by 4x4 transposes. The column passes,
// independent across columns, vectorise by themselves. Where the CPU has
// AVX2 the luminance is computed four pixels at a time in integers (luma4:
// the same floats as the double products and sums), picked at start-up.

#ifdef __clang__
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "downsample.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define XP_X86 1
#endif
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#define OUT 64

typedef float v4sf __attribute__((vector_size(16)));
typedef double v4df __attribute__((vector_size(32)));
typedef float v4u __attribute__((vector_size(16), aligned(4))); // v4sf at any float's address

// LANES rows go through the row filters at once: row r of a batch is lane
// r%4 of vector NG*x + r/4 at column x (float LANES*x + r).
#define LANES 16
#define NG (LANES / 4) // vectors per position

static inline v4sf quot4(v4sf x, double inv) {
	v4df d = __builtin_convertvector(x, v4df);
	d = d * inv;
	return __builtin_convertvector(d, v4sf);
}

static int window_size(int dim) { return (dim + 2 * OUT - 1) / (2 * OUT); }

static int sample_index(int i, int dim) { return (int)(((double)i + 0.5) * (double)dim / OUT); }

// box_rows is filter.go's boxRow on LANES rows at once, lane-interleaved
// (NG vectors per position): a centred box of win over in[0..n), clipped at
// the ends, as a running sum. n >= win. Each vector's running sum is serial
// (bound by the latency of its additions); the NG of them are independent.
// With want, only the outputs at the positions it marks are written (the
// running sums, and so those outputs, are the same; the other quotients
// are skipped).
static inline __attribute__((always_inline)) void box_rows(const v4sf *in, v4sf *out, int n, int win,
                                                           const unsigned char *want) {
	int half = (win + 2) / 2;
	v4sf s[NG];
	for (int g = 0; g < NG; g++) {
		s[g] = (v4sf){0, 0, 0, 0};
	}
	for (int k = 0; k < half - 1; k++) {
		for (int g = 0; g < NG; g++) {
			s[g] += in[NG * k + g];
		}
	}
	for (int k = 0; k < win - (half - 1); k++) {
		for (int g = 0; g < NG; g++) {
			s[g] += in[NG * (half - 1 + k) + g];
		}
		if (want == NULL || want[k]) {
			double q = 1.0 / (double)(half + k);
			for (int g = 0; g < NG; g++) {
				out[NG * k + g] = quot4(s[g], q);
			}
		}
	}
	double inv = 1.0 / (double)win;
	int head = win - half + 1;
	for (int k = 0; k < n - win; k++) {
		for (int g = 0; g < NG; g++) {
			s[g] += in[NG * (win + k) + g];
			s[g] -= in[NG * k + g];
		}
		if (want == NULL || want[head + k]) {
			for (int g = 0; g < NG; g++) {
				out[NG * (head + k) + g] = quot4(s[g], inv);
			}
		}
	}
	int li = n - win;
	for (int oi = n - half + 1; oi < n; oi++) {
		for (int g = 0; g < NG; g++) {
			s[g] -= in[NG * li + g];
		}
		li++;
		if (want == NULL || want[oi]) {
			double q = 1.0 / (double)(win - (li - (n - win)));
			for (int g = 0; g < NG; g++) {
				out[NG * oi + g] = quot4(s[g], q);
			}
		}
	}
}

// luma_px is one pixel's luminance, float(R[r] + G[g] + B[b]) from the
// reference's tables t (luma.go).
static inline float luma_px(const double *t, const unsigned char *px) {
	return (float)(t[px[0]] + t[256 + px[1]] + t[512 + px[2]]);
}

// luma_scalar writes the luminance of the LANES rows p[0..LANES) into l4
// (row r at x: lane r%4 of l4[2x + r/4]), from pixel x0 on.

static void luma_scalar(const unsigned char *const *p, int x0, int w, const double *t, v4sf *l4) {
	for (int r = 0; r < LANES; r++) {
		float *l = (float *)l4 + r; // row r's value at x is l[LANES * x]
		const unsigned char *q = p[r];
		for (int x = x0; x < w; x++) {
			l[LANES * x] = luma_px(t, q + 3 * x);
		}
	}
}

#ifdef XP_X86
// luma4 is the luminance of four packed RGB pixels (16 bytes loaded, 12
// used) in integers: N = 299R + 587G + 114B, exact in 32 bits, then the
// float division N / 1000, correctly rounded. That is the float the
// tables' double sum rounds to, for every one of the 2^24 colours
// (TestLumaIntegerIdentity): the exact value N/1000 is either a float
// itself or at least 2^-40 (relative) from a float rounding midpoint, far
// more than the double sum's error.
__attribute__((target("avx2"))) static inline __m128 luma4(const unsigned char *px) {
	const __m128i srg = _mm_setr_epi8(0, -1, 1, -1, 3, -1, 4, -1, 6, -1, 7, -1, 9, -1, 10, -1);
	const __m128i sb = _mm_setr_epi8(2, -1, -1, -1, 5, -1, -1, -1, 8, -1, -1, -1, 11, -1, -1, -1);
	const __m128i wrg = _mm_set1_epi32((587 << 16) | 299), wb = _mm_set1_epi32(114);
	__m128i b = _mm_loadu_si128((const __m128i *)px);
	__m128i n = _mm_add_epi32(_mm_madd_epi16(_mm_shuffle_epi8(b, srg), wrg), _mm_madd_epi16(_mm_shuffle_epi8(b, sb), wb));
	return _mm_div_ps(_mm_cvtepi32_ps(n), _mm_set1_ps(1000.0f));
}

// luma_avx2 is luma_scalar four pixels of a row at a time (luma4), each
// 4x4 block of rows and pixels then transposed into l4's lanes. A 16-byte
// load reads past a row's four pixels, so the last pixels of each row go
// through luma_scalar.
__attribute__((target("avx2"))) static void luma_avx2(const unsigned char *const *p, int w, const double *t,
                                                     v4sf *l4) {
	int x = 0;
	for (; x + 6 <= w; x += 4) { // 3x + 16 <= 3w: the load stays in the row
		for (int g = 0; g < NG; g++) {
			__m128 v[4];
			for (int r = 0; r < 4; r++) {
				v[r] = luma4(p[4 * g + r] + 3 * x);
			}
			_MM_TRANSPOSE4_PS(v[0], v[1], v[2], v[3]);
			for (int k = 0; k < 4; k++) {
				_mm_store_ps((float *)&l4[NG * (x + k) + g], v[k]);
			}
		}
	}
	luma_scalar(p, x, w, t, l4);
}

static int have_avx2;

__attribute__((constructor)) static void xp_detect(void) {
	__builtin_cpu_init();
	have_avx2 = __builtin_cpu_supports("avx2");
}
#endif

// interleave writes LANES rows of w floats (row r at rows + r*w) into the
// lane-interleaved layout of the row filters (row r at x: lane r%4 of
// v[2x + r/4]).
static void interleave(const float *rows, v4sf *v, int w) {
	int x = 0;
#ifdef __SSE2__
	for (; x + 4 <= w; x += 4) {
		for (int g = 0; g < NG; g++) {
			const float *r0 = rows + (size_t)(4 * g) * w + x;
			__m128 a = _mm_loadu_ps(r0), b = _mm_loadu_ps(r0 + w);
			__m128 c = _mm_loadu_ps(r0 + 2 * w), d = _mm_loadu_ps(r0 + 3 * w);
			_MM_TRANSPOSE4_PS(a, b, c, d);
			v[NG * x + g] = (v4sf)a;
			v[NG * (x + 1) + g] = (v4sf)b;
			v[NG * (x + 2) + g] = (v4sf)c;
			v[NG * (x + 3) + g] = (v4sf)d;
		}
	}
#endif
	float *f = (float *)v;
	for (; x < w; x++) {
		for (int r = 0; r < LANES; r++) {
			f[LANES * x + r] = rows[(size_t)r * w + x];
		}
	}
}

struct state {
	int w, h, win_rows, first, pending;
	const int *xs;
	const unsigned char *want; // want[x]: x is one of xs
	float *erows;  // rows of the first column pass waiting for the second row pass (LANES rows of w)
	v4sf *e4, *r4; // the same rows lane-interleaved, and row-filtered
	float *cols;   // the 64 sampled columns of every row (h rows of 64)
};

// flush runs the second row pass on the pending rows and keeps their 64
// sampled columns.
static void flush(struct state *s) {
	if (s->pending == 0) {
		return;
	}
	interleave(s->erows, s->e4, s->w);
	box_rows(s->e4, s->r4, s->w, s->win_rows, s->want);
	for (int r = 0; r < s->pending; r++) {
		for (int j = 0; j < OUT; j++) {
			s->cols[(long)(s->first + r) * OUT + j] = ((const float *)s->r4)[LANES * s->xs[j] + r];
		}
	}
	s->first += s->pending;
	s->pending = 0;
}

// lane returns the lane the next output row of the first column pass goes
// to, flushing a full batch first.
static int lane(struct state *s) {
	if (s->pending == LANES) {
		flush(s);
	}
	return s->pending++;
}

int xp_downsample_rgb(const unsigned char *pix, long stride, int w, int h, const double *t, float *plane) {
	int win_rows = window_size(w), win_cols = window_size(h);
	int half = (win_cols + 2) / 2;
	int slots = win_cols + LANES;
	int xs[OUT], ys[OUT];
	for (int j = 0; j < OUT; j++) {
		xs[j] = sample_index(j, w);
		ys[j] = sample_index(j, h);
	}
	size_t nf = (size_t)slots * w + w + (size_t)OUT * h + h + (size_t)LANES * w;
	char *mem = malloc(sizeof(v4sf) * (4 * NG * (size_t)w) + sizeof(float) * nf + (size_t)w + 16);
	if (mem == NULL) {
		return -1;
	}
	// v4sf arrays first (aligned by malloc's 16 bytes), then floats.
	v4sf *l4 = (v4sf *)mem;  // LANES rows of luminance, interleaved
	v4sf *f4 = l4 + NG * w;  // the same rows row-filtered
	v4sf *e4 = f4 + NG * w;
	v4sf *r4 = e4 + NG * w;
	float *ring = (float *)(r4 + NG * w); // slots row-filtered rows
	float *sum = ring + (size_t)slots * w;
	float *cols = sum + w;
	unsigned char *want = (unsigned char *)(cols + (size_t)OUT * h);
	memset(sum, 0, sizeof(float) * w);
	float *erows = (float *)(want + w + (-(uintptr_t)(want + w) & 15)); // past want, aligned
	memset(erows, 0, sizeof(float) * LANES * (size_t)w); // rows past a last partial batch
	memset(want, 0, (size_t)w);
	for (int j = 0; j < OUT; j++) {
		want[xs[j]] = 1;
	}
	struct state s = {w, h, win_rows, 0, 0, xs, want, erows, e4, r4, cols};
	int cnt = 0;
	for (int y0 = 0; y0 < h; y0 += LANES) {
		int n = h - y0 < LANES ? h - y0 : LANES;
		const unsigned char *p[LANES];
		for (int r = 0; r < LANES; r++) {
			p[r] = pix + (long)(y0 + (r < n ? r : 0)) * stride;
		}
#ifdef XP_X86
		if (have_avx2) {
			luma_avx2(p, w, t, l4);
		} else
#endif
			luma_scalar(p, 0, w, t, l4);
		box_rows(l4, f4, w, win_rows, NULL);
		float *rows[LANES];
		for (int r = 0; r < LANES; r++) {
			rows[r] = ring + (size_t)((y0 + (r < n ? r : 0)) % slots) * w;
		}
		int x = 0;
#ifdef __SSE2__
		// Four columns of four rows at a time, transposed: contiguous
		// loads and stores. Rows past the image's last (r >= n) are not
		// stored.
		for (; x + 4 <= w; x += 4) {
			for (int g = 0; g < NG; g++) {
				__m128 a = (__m128)f4[NG * x + g], b = (__m128)f4[NG * (x + 1) + g];
				__m128 c = (__m128)f4[NG * (x + 2) + g], d = (__m128)f4[NG * (x + 3) + g];
				_MM_TRANSPOSE4_PS(a, b, c, d);
				int r = 4 * g;
				if (r < n) {
					_mm_storeu_ps(rows[r] + x, a);
				}
				if (r + 1 < n) {
					_mm_storeu_ps(rows[r + 1] + x, b);
				}
				if (r + 2 < n) {
					_mm_storeu_ps(rows[r + 2] + x, c);
				}
				if (r + 3 < n) {
					_mm_storeu_ps(rows[r + 3] + x, d);
				}
			}
		}
#endif
		for (int r = 0; r < n; r++) {
			const float *f = (const float *)f4 + r;
			for (int xx = x; xx < w; xx++) {
				rows[r][xx] = f[LANES * xx];
			}
		}
		// First column pass: add row y, drop row y-win_cols once the window
		// is full, and output row y-(half-1) once it is defined.
		for (int y = y0; y < y0 + n; y++) {
			const float *in = ring + (size_t)(y % slots) * w;
			if (y >= win_cols) {
				const float *old = ring + (size_t)((y - win_cols) % slots) * w;
				double inv = 1.0 / (double)cnt;
				float *el = erows + (size_t)lane(&s) * w;
				for (int j = 0; j < w; j++) {
					float v = sum[j] + in[j];
					v -= old[j];
					sum[j] = v;
					el[j] = (float)((double)v * inv);
				}
			} else if (y >= half - 1) {
				cnt++;
				double inv = 1.0 / (double)cnt;
				float *el = erows + (size_t)lane(&s) * w;
				for (int j = 0; j < w; j++) {
					sum[j] += in[j];
					el[j] = (float)((double)sum[j] * inv);
				}
			} else {
				cnt++;
				for (int j = 0; j < w; j++) {
					sum[j] += in[j];
				}
			}
		}
	}
	for (int oi = h - half + 1; oi < h; oi++) {
		const float *old = ring + (size_t)((oi - (win_cols - half + 1)) % slots) * w;
		cnt--;
		double inv = 1.0 / (double)cnt;
		float *el = erows + (size_t)lane(&s) * w;
		for (int j = 0; j < w; j++) {
			sum[j] -= old[j];
			el[j] = (float)((double)sum[j] * inv);
		}
	}
	flush(&s);
	// Second column pass, only on the 64 sampled columns (boxRow along each),
	// read at the 64 sampled rows. cols holds them row by row, so the 64
	// running sums go side by side in 16 vectors (each lane the scalar
	// operations of its column), divided only at the sampled rows.
	{
		int half2 = (win_cols + 2) / 2;
		v4sf acc[OUT / 4];
		for (int g = 0; g < OUT / 4; g++) {
			acc[g] = (v4sf){0, 0, 0, 0};
		}
		int next = 0; // the next output row i (ys is non-decreasing)
#define ROW(k) ((const v4u *)(cols + (size_t)(k) * OUT))
#define EMIT(pos, q)                                                   \
	while (next < OUT && ys[next] == (pos)) {                          \
		double qq = (q);                                               \
		float *o = plane + (size_t)next * OUT;                         \
		for (int g = 0; g < OUT / 4; g++) {                            \
			v4sf v = quot4(acc[g], qq);                                \
			memcpy(o + 4 * g, &v, sizeof v);                           \
		}                                                              \
		next++;                                                        \
	}
		for (int k = 0; k < half2 - 1; k++) {
			const v4u *in = ROW(k);
			for (int g = 0; g < OUT / 4; g++) {
				acc[g] += in[g];
			}
		}
		for (int k = 0; k < win_cols - (half2 - 1); k++) {
			const v4u *in = ROW(half2 - 1 + k);
			for (int g = 0; g < OUT / 4; g++) {
				acc[g] += in[g];
			}
			EMIT(k, 1.0 / (double)(half2 + k));
		}
		double inv = 1.0 / (double)win_cols;
		int head = win_cols - half2 + 1;
		for (int k = 0; k < h - win_cols; k++) {
			const v4u *add = ROW(win_cols + k), *sub = ROW(k);
			for (int g = 0; g < OUT / 4; g++) {
				acc[g] += add[g];
				acc[g] -= sub[g];
			}
			EMIT(head + k, inv);
		}
		int li = h - win_cols;
		for (int oi = h - half2 + 1; oi < h; oi++) {
			const v4u *sub = ROW(li);
			for (int g = 0; g < OUT / 4; g++) {
				acc[g] -= sub[g];
			}
			li++;
			EMIT(oi, 1.0 / (double)(win_cols - (li - (h - win_cols))));
		}
#undef EMIT
#undef ROW
	}
	free(mem);
	return 0;
}

// dct is pdq.go's dct64To16Go: b = D A D^T for the 16x64 basis d (dt, its
// transpose, 64x16), every output summed in the same order with the same
// float operations (products rounded to float, no contraction); only the
// independent outputs run side by side in vectors.
static inline __attribute__((always_inline)) void dct(const float *a, const float *d, const float *dt, float *b) {
	float t[16 * 64];
	for (int i = 0; i < 16; i++) {
		float *ti = t + i * 64;
		for (int j = 0; j < 64; j++) {
			ti[j] = 0;
		}
		for (int k = 0; k < 64; k++) {
			float dk = d[i * 64 + k];
			const float *ak = a + k * 64;
			for (int j = 0; j < 64; j++) {
				ti[j] += dk * ak[j];
			}
		}
	}
	for (int i = 0; i < 16; i++) {
		const float *ti = t + i * 64;
		float s[16] = {0};
		for (int k = 0; k < 64; k++) {
			float tk = ti[k];
			const float *dk = dt + k * 16;
			for (int j = 0; j < 16; j++) {
				s[j] += tk * dk[j];
			}
		}
		for (int j = 0; j < 16; j++) {
			b[i * 16 + j] = s[j];
		}
	}
}

#ifdef XP_X86
__attribute__((target("avx2"))) static void dct_avx2(const float *a, const float *d, const float *dt, float *b) {
	dct(a, d, dt, b);
}
#endif

void xp_dct64to16(const float *a, const float *d, const float *dt, float *b) {
#ifdef XP_X86
	if (have_avx2) {
		dct_avx2(a, d, dt, b);
		return;
	}
#endif
	dct(a, d, dt, b);
}

// The grid's vertical pass (reduced.go, gridScratch.gridPlane): each
// row's luminance (as luma_scalar computes it), added, times its weight,
// into the 64 vertical samples whose kernel covers the row: the Go code's
// operations in its order (per value, rows in order), so both paths give
// the same plane; the additions along a row vectorise.
static void luma_row_scalar(const unsigned char *p, int x0, int w, const double *t, float *l) {
	for (int x = x0; x < w; x++) {
		l[x] = luma_px(t, p + 3 * x);
	}
}

#ifdef XP_X86
__attribute__((target("avx2"))) static void luma_row_avx2(const unsigned char *p, int w, const double *t, float *l) {
	int x = 0;
	for (; x + 6 <= w; x += 4) { // 3x + 16 <= 3w: the load stays in the row
		_mm_storeu_ps(l + x, luma4(p + 3 * x));
	}
	luma_row_scalar(p, x, w, t, l);
}
#endif

void xp_grid_rows(const unsigned char *pix, long stride, int w, int h, const double *t, const int *first,
                  const int *woff, const double *wts, float *luma, double *acc) {
	int lo = 0;
	for (int y = 0; y < h; y++) {
		const unsigned char *p = pix + stride * (long)y;
#ifdef XP_X86
		if (have_avx2) {
			luma_row_avx2(p, w, t, luma);
		} else {
			luma_row_scalar(p, 0, w, t, luma);
		}
#else
		luma_row_scalar(p, 0, w, t, luma);
#endif
		while (lo < OUT && first[lo] + (woff[lo + 1] - woff[lo]) <= y) {
			lo++;
		}
		for (int i = lo; i < OUT && first[i] <= y; i++) {
			double wgt = wts[woff[i] + (y - first[i])];
			double *a = acc + (long)i * w;
			for (int x = 0; x < w; x++) {
				a[x] += wgt * (double)luma[x];
			}
		}
	}
}
