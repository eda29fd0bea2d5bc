// The PDQ downsampler of filter.go for packed 8-bit RGB, in C: the same
// float32 operations in the same order (no contraction into fused
// multiply-adds: -ffp-contract=off), so the 64x64 plane is bit for bit the
// Go code's (TestDownsampleRGBMatchesGo), which is the reference's. The
// row filters are running sums, serial along a row, so eight rows go through
// them at once, in the four lanes of two vectors (each lane computes exactly
// the scalar operations of its row; two vectors, because one running sum is
// bound by the latency of its additions); the column passes, independent
// across columns, vectorise by themselves.

#ifdef __clang__
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <stdlib.h>
#include <string.h>

#include "downsample.h"

#define OUT 64

typedef float v4sf __attribute__((vector_size(16)));
typedef double v4df __attribute__((vector_size(32)));

// LANES rows go through the row filters at once: rows r of a batch is lane
// r%4 of vector 2*x + r/4 at column x.
#define LANES 8

static inline v4sf quot4(v4sf x, double inv) {
	v4df d = __builtin_convertvector(x, v4df);
	d = d * inv;
	return __builtin_convertvector(d, v4sf);
}

static int window_size(int dim) { return (dim + 2 * OUT - 1) / (2 * OUT); }

static int sample_index(int i, int dim) { return (int)(((double)i + 0.5) * (double)dim / OUT); }

// box_row8 is filter.go's boxRow on eight rows at once, lane-interleaved
// (two vectors per position): a centred box of win over in[0..n), clipped
// at the ends, as a running sum. n >= win. With want, only the outputs at
// the positions it marks are written (the running sums, and so those
// outputs, are the same; the other quotients are skipped).
static inline __attribute__((always_inline)) void box_row8(const v4sf *in, v4sf *out, int n, int win,
                                                           const unsigned char *want) {
	int half = (win + 2) / 2;
	v4sf s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
	for (int k = 0; k < half - 1; k++) {
		s0 += in[2 * k];
		s1 += in[2 * k + 1];
	}
	for (int k = 0; k < win - (half - 1); k++) {
		s0 += in[2 * (half - 1 + k)];
		s1 += in[2 * (half - 1 + k) + 1];
		if (want == NULL || want[k]) {
			double q = 1.0 / (double)(half + k);
			out[2 * k] = quot4(s0, q);
			out[2 * k + 1] = quot4(s1, q);
		}
	}
	double inv = 1.0 / (double)win;
	int head = win - half + 1;
	for (int k = 0; k < n - win; k++) {
		s0 += in[2 * (win + k)];
		s1 += in[2 * (win + k) + 1];
		s0 -= in[2 * k];
		s1 -= in[2 * k + 1];
		if (want == NULL || want[head + k]) {
			out[2 * (head + k)] = quot4(s0, inv);
			out[2 * (head + k) + 1] = quot4(s1, inv);
		}
	}
	int li = n - win;
	for (int oi = n - half + 1; oi < n; oi++) {
		s0 -= in[2 * li];
		s1 -= in[2 * li + 1];
		li++;
		if (want == NULL || want[oi]) {
			double q = 1.0 / (double)(win - (li - (n - win)));
			out[2 * oi] = quot4(s0, q);
			out[2 * oi + 1] = quot4(s1, q);
		}
	}
}

struct state {
	int w, h, win_rows, first, pending;
	const int *xs;
	const unsigned char *want; // want[x]: x is one of xs
	v4sf *e4, *r4; // rows of the first column pass waiting for the second row pass, lane-interleaved
	float *cols;   // 64 sampled columns, h each
};

// flush runs the second row pass on the pending rows and keeps their 64
// sampled columns.
static void flush(struct state *s) {
	if (s->pending == 0) {
		return;
	}
	box_row8(s->e4, s->r4, s->w, s->win_rows, s->want);
	for (int r = 0; r < s->pending; r++) {
		for (int j = 0; j < OUT; j++) {
			s->cols[(long)j * s->h + s->first + r] = ((const float *)s->r4)[LANES * s->xs[j] + r];
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
	size_t nf = (size_t)slots * w + w + (size_t)OUT * h + h;
	char *mem = malloc(sizeof(v4sf) * (8 * (size_t)w) + sizeof(float) * nf + (size_t)w);
	if (mem == NULL) {
		return -1;
	}
	// v4sf arrays first (aligned by malloc's 16 bytes), then floats.
	v4sf *l4 = (v4sf *)mem;  // LANES rows of luminance, interleaved
	v4sf *f4 = l4 + 2 * w;   // the same rows row-filtered
	v4sf *e4 = f4 + 2 * w;
	v4sf *r4 = e4 + 2 * w;
	float *ring = (float *)(r4 + 2 * w); // slots row-filtered rows
	float *sum = ring + (size_t)slots * w;
	float *cols = sum + w;
	float *col = cols + (size_t)OUT * h;
	unsigned char *want = (unsigned char *)(col + h);
	memset(sum, 0, sizeof(float) * w);
	memset(e4, 0, sizeof(v4sf) * 2 * w); // lanes past a last partial batch
	memset(want, 0, (size_t)w);
	for (int j = 0; j < OUT; j++) {
		want[xs[j]] = 1;
	}
	const double *t0 = t, *t1 = t + 256, *t2 = t + 512;
	struct state s = {w, h, win_rows, 0, 0, xs, want, e4, r4, cols};
	int cnt = 0;
	for (int y0 = 0; y0 < h; y0 += LANES) {
		int n = h - y0 < LANES ? h - y0 : LANES;
		for (int r = 0; r < LANES; r++) {
			const unsigned char *p = pix + (long)(y0 + (r < n ? r : 0)) * stride;
			float *l = (float *)l4 + r; // row r's value at x is l[LANES * x]
			for (int x = 0; x < w; x++) {
				l[LANES * x] = (float)(t0[p[3 * x]] + t1[p[3 * x + 1]] + t2[p[3 * x + 2]]);
			}
		}
		box_row8(l4, f4, w, win_rows, NULL);
		for (int r = 0; r < n; r++) {
			float *row = ring + (size_t)((y0 + r) % slots) * w;
			const float *f = (const float *)f4 + r;
			for (int x = 0; x < w; x++) {
				row[x] = f[LANES * x];
			}
		}
		// First column pass: add row y, drop row y-win_cols once the window
		// is full, and output row y-(half-1) once it is defined.
		for (int y = y0; y < y0 + n; y++) {
			const float *in = ring + (size_t)(y % slots) * w;
			if (y >= win_cols) {
				const float *old = ring + (size_t)((y - win_cols) % slots) * w;
				double inv = 1.0 / (double)cnt;
				float *el = (float *)e4 + lane(&s);
				for (int j = 0; j < w; j++) {
					float v = sum[j] + in[j];
					v -= old[j];
					sum[j] = v;
					el[LANES * j] = (float)((double)v * inv);
				}
			} else if (y >= half - 1) {
				cnt++;
				double inv = 1.0 / (double)cnt;
				float *el = (float *)e4 + lane(&s);
				for (int j = 0; j < w; j++) {
					sum[j] += in[j];
					el[LANES * j] = (float)((double)sum[j] * inv);
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
		float *el = (float *)e4 + lane(&s);
		for (int j = 0; j < w; j++) {
			sum[j] -= old[j];
			el[LANES * j] = (float)((double)sum[j] * inv);
		}
	}
	flush(&s);
	// Second column pass, only on the 64 sampled columns (boxRow along each),
	// read at the 64 sampled rows.
	for (int j = 0; j < OUT; j++) {
		const float *in = cols + (long)j * h;
		int half2 = (win_cols + 2) / 2;
		float acc = 0;
		for (int k = 0; k < half2 - 1; k++) {
			acc += in[k];
		}
		for (int k = 0; k < win_cols - (half2 - 1); k++) {
			acc += in[half2 - 1 + k];
			col[k] = (float)((double)acc * (1.0 / (double)(half2 + k)));
		}
		double inv = 1.0 / (double)win_cols;
		int head = win_cols - half2 + 1;
		for (int k = 0; k < h - win_cols; k++) {
			acc += in[win_cols + k];
			acc -= in[k];
			col[head + k] = (float)((double)acc * inv);
		}
		int li = h - win_cols;
		for (int oi = h - half2 + 1; oi < h; oi++) {
			acc -= in[li];
			li++;
			col[oi] = (float)((double)acc * (1.0 / (double)(win_cols - (li - (h - win_cols)))));
		}
		for (int i = 0; i < OUT; i++) {
			plane[i * OUT + j] = col[ys[i]];
		}
	}
	free(mem);
	return 0;
}
