// The hot loops of the window pipeline in C: the separable Gaussian blur,
// the difference-of-Gaussian extremum scan, window sampling with its
// quality, the window DCT and the area resampling. Each output is computed
// by the same float32 and float64 operations in the same order as the Go
// code (plane.go, keypoints.go, windows.go, winhash.go) and without
// contraction into fused multiply-adds (-ffp-contract=off), so the results
// are bit for bit the Go code's (fast_test.go). Vectorisation runs across
// independent outputs only (never reassociating a sum); where the CPU has
// AVX2 the same loops are compiled for it as well, picked at start-up.

#ifdef __clang__
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fast.h"

#define WIN 32
#define FREQS 16

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ND_AVX2 1
#include <immintrin.h>
#endif

#define INLINE static inline __attribute__((always_inline))

static inline int clampi(int i, int n) {
	if (i < 0) {
		return 0;
	}
	if (i >= n) {
		return n - 1;
	}
	return i;
}

// blur_body is gaussBlurBuf's two passes: out = kc*mid, then per tap pair
// out += k[t]*(lo+hi).
INLINE void blur_body(const float *restrict src, int w, int h, const float *restrict k, int rad,
	float *restrict tmp, float *restrict pad, float *restrict dst) {
	const float kc = k[rad];
	for (int y = 0; y < h; y++) {
		const float *row = src + (long)y * w;
		memcpy(pad + rad, row, (size_t)w * sizeof(float));
		for (int i = 0; i < rad; i++) {
			pad[i] = row[0];
			pad[rad + w + i] = row[w - 1];
		}
		float *restrict out = tmp + (long)y * w;
		const float *mid = pad + rad;
		for (int x = 0; x < w; x++) {
			out[x] = kc * mid[x];
		}
		for (int t = 0; t < rad; t++) {
			const float kv = k[t];
			const float *lo = pad + t, *hi = pad + 2 * rad - t;
			for (int x = 0; x < w; x++) {
				out[x] += kv * (lo[x] + hi[x]);
			}
		}
	}
	for (int y = 0; y < h; y++) {
		float *restrict out = dst + (long)y * w;
		const float *mid = tmp + (long)y * w;
		for (int x = 0; x < w; x++) {
			out[x] = kc * mid[x];
		}
		for (int t = 0; t < rad; t++) {
			const float kv = k[t];
			int y0 = clampi(y + t - rad, h), y1 = clampi(y + rad - t, h);
			const float *lo = tmp + (long)y0 * w, *hi = tmp + (long)y1 * w;
			for (int x = 0; x < w; x++) {
				out[x] += kv * (lo[x] + hi[x]);
			}
		}
	}
}

// dog_body fills dogs[i] = levels[i+1] - levels[i] (5 planes of w*h).
INLINE void dog_body(const float *restrict lv, long n, int ndog, float *restrict dogs) {
	for (int i = 0; i < ndog; i++) {
		const float *a = lv + i * n, *b = lv + (i + 1) * n;
		float *restrict d = dogs + i * n;
		for (long j = 0; j < n; j++) {
			d[j] = b[j] - a[j];
		}
	}
}

// mark_body sets m[x] for the pixels of row x0..x1 of dog level d1 that
// pass detect's first tests: |v| >= thr (thr is the least float32 at or
// above minResp) and no neighbour in the level's 3x3 block above a
// positive v, none below a negative one. The levels above and below are
// checked for the few that pass (full_check).
INLINE void mark_body(const float *restrict d1, int w, int x0, int x1, float thr, unsigned char *restrict m) {
	for (int x = x0; x < x1; x++) {
		float v = d1[x];
		const float *p = d1;
		int gt = (p[x - w - 1] > v) | (p[x - w] > v) | (p[x - w + 1] > v) | (p[x - 1] > v) |
			(p[x + 1] > v) | (p[x + w - 1] > v) | (p[x + w] > v) | (p[x + w + 1] > v);
		int lt = (p[x - w - 1] < v) | (p[x - w] < v) | (p[x - w + 1] < v) | (p[x - 1] < v) |
			(p[x + 1] < v) | (p[x + w - 1] < v) | (p[x + w] < v) | (p[x + w + 1] < v);
		int big = fabsf(v) >= thr;
		int pos = v > 0;
		m[x] = (unsigned char)(big & ((pos & !gt) | (!pos & !lt)));
	}
}

// full_check is the rest of extremum for the pixel x of a marked row: the
// levels below (d0) and above (d2).
static inline int full_check(const float *d0, const float *d2, int x, int w, float v) {
	const float *ps[2] = {d0, d2};
	if (v > 0) {
		for (int k = 0; k < 2; k++) {
			const float *p = ps[k];
			if (p[x - w - 1] > v || p[x - w] > v || p[x - w + 1] > v || p[x - 1] > v || p[x] > v ||
				p[x + 1] > v || p[x + w - 1] > v || p[x + w] > v || p[x + w + 1] > v) {
				return 0;
			}
		}
		return 1;
	}
	for (int k = 0; k < 2; k++) {
		const float *p = ps[k];
		if (p[x - w - 1] < v || p[x - w] < v || p[x - w + 1] < v || p[x - 1] < v || p[x] < v ||
			p[x + 1] < v || p[x + w - 1] < v || p[x + w] < v || p[x + w + 1] < v) {
			return 0;
		}
	}
	return 1;
}

#ifdef ND_AVX2
__attribute__((target("avx2"))) static void blur_avx2(const float *src, int w, int h, const float *k, int rad,
	float *tmp, float *pad, float *dst) {
	blur_body(src, w, h, k, rad, tmp, pad, dst);
}
__attribute__((target("avx2"))) static void dog_avx2(const float *lv, long n, int ndog, float *dogs) {
	dog_body(lv, n, ndog, dogs);
}
__attribute__((target("avx2"))) static void mark_avx2(const float *d1, int w, int x0, int x1, float thr,
	unsigned char *m) {
	mark_body(d1, w, x0, x1, thr, m);
}
#endif
static void blur_base(const float *src, int w, int h, const float *k, int rad, float *tmp, float *pad, float *dst) {
	blur_body(src, w, h, k, rad, tmp, pad, dst);
}
static void dog_base(const float *lv, long n, int ndog, float *dogs) { dog_body(lv, n, ndog, dogs); }
static void mark_base(const float *d1, int w, int x0, int x1, float thr, unsigned char *m) {
	mark_body(d1, w, x0, x1, thr, m);
}

static int have_avx2(void) {
#ifdef ND_AVX2
	static int v = -1;
	if (v < 0) {
		__builtin_cpu_init();
		v = __builtin_cpu_supports("avx2") ? 1 : 0;
	}
	return v;
#else
	return 0;
#endif
}

void nd_blur(const float *src, int w, int h, const float *k, int rad, float *tmp, float *pad, float *dst) {
#ifdef ND_AVX2
	if (have_avx2()) {
		blur_avx2(src, w, h, k, rad, tmp, pad, dst);
		return;
	}
#endif
	blur_base(src, w, h, k, rad, tmp, pad, dst);
}

// nd_scan computes the five DoG planes of an octave's six levels into dogs
// and writes the candidates of detect's scan, in its order (level s = 1..3,
// then rows, then columns), as s*w*h + y*w + x; it returns their number.
// out must hold 3*w*h entries.
long nd_scan(const float *levels, int w, int h, int bd, float thr, float *dogs, int *out) {
	long n = (long)w * h;
	int avx = have_avx2();
#ifdef ND_AVX2
	if (avx) {
		dog_avx2(levels, n, 5, dogs);
	} else
#endif
		dog_base(levels, n, 5, dogs);
	unsigned char m[w > 0 ? w : 1];
	long c = 0;
	for (int s = 1; s < 4; s++) {
		const float *d0 = dogs + (s - 1) * n, *d1 = dogs + s * n, *d2 = dogs + (s + 1) * n;
		for (int y = bd; y < h - bd; y++) {
			long r = (long)y * w;
			if (bd >= w - bd) {
				continue;
			}
#ifdef ND_AVX2
			if (avx) {
				mark_avx2(d1 + r, w, bd, w - bd, thr, m);
			} else
#endif
				mark_base(d1 + r, w, bd, w - bd, thr, m);
			for (int x = bd; x < w - bd; x++) {
				if (m[x] && full_check(d0 + r, d2 + r, x, w, d1[r + x])) {
					out[c++] = (int)(s * n + r + x);
				}
			}
		}
	}
	(void)avx;
	return c;
}

// nd_window is sampleWindow's sampling loop and normQuality: it fills buf
// (WIN x WIN) and returns the quality, or -1 for a window flatter than one
// grey level.
INLINE void sample_body(const float *restrict src, int w, int h, double cx, double cy, double half, double step,
	double ux, double uy, double vx, double vy, double sc, float *restrict buf) {
	for (int j = 0; j < WIN; j++) {
		double b = ((double)j + 0.5) * step - half;
		for (int i = 0; i < WIN; i++) {
			double a = ((double)i + 0.5) * step - half;
			double x = cx + a * ux + b * vx;
			double y = cy + a * uy + b * vy;
			x = x / sc;
			y = y / sc;
			x -= 0.5;
			y -= 0.5;
			double x0 = floor(x), y0 = floor(y);
			float fx = (float)(x - x0), fy = (float)(y - y0);
			int ix = (int)x0, iy = (int)y0;
			int ix0 = clampi(ix, w), ix1 = clampi(ix + 1, w);
			int iy0 = clampi(iy, h), iy1 = clampi(iy + 1, h);
			const float *r0 = src + (long)iy0 * w, *r1 = src + (long)iy1 * w;
			float va = r0[ix0] + (r0[ix1] - r0[ix0]) * fx;
			float vb = r1[ix0] + (r1[ix1] - r1[ix0]) * fx;
			buf[j * WIN + i] = va + (vb - va) * fy;
		}
	}
}

#ifdef ND_AVX2
// sample_avx2 is sample_body four grid points at a time: the same double
// and float operations per point (floor by vroundpd, the float conversion
// rounding to nearest as Go's), the pixels fetched by gathers.
__attribute__((target("avx2"))) static void sample_avx2(const float *src, int w, int h, double cx, double cy,
	double half, double step, double ux, double uy, double vx, double vy, double sc, float *buf) {
	double av[WIN];
	for (int i = 0; i < WIN; i++) {
		av[i] = ((double)i + 0.5) * step - half;
	}
	const __m256d vcx = _mm256_set1_pd(cx), vcy = _mm256_set1_pd(cy), vux = _mm256_set1_pd(ux),
		      vuy = _mm256_set1_pd(uy), vsc = _mm256_set1_pd(sc), vhalf = _mm256_set1_pd(0.5);
	const __m128i zero = _mm_setzero_si128(), one = _mm_set1_epi32(1), wmax = _mm_set1_epi32(w - 1),
		      hmax = _mm_set1_epi32(h - 1), vw = _mm_set1_epi32(w);
	for (int j = 0; j < WIN; j++) {
		double b = ((double)j + 0.5) * step - half;
		const __m256d bvx = _mm256_set1_pd(b * vx), bvy = _mm256_set1_pd(b * vy);
		for (int i = 0; i < WIN; i += 4) {
			__m256d a = _mm256_loadu_pd(av + i);
			__m256d x = _mm256_add_pd(_mm256_add_pd(vcx, _mm256_mul_pd(a, vux)), bvx);
			__m256d y = _mm256_add_pd(_mm256_add_pd(vcy, _mm256_mul_pd(a, vuy)), bvy);
			x = _mm256_sub_pd(_mm256_div_pd(x, vsc), vhalf);
			y = _mm256_sub_pd(_mm256_div_pd(y, vsc), vhalf);
			__m256d x0 = _mm256_floor_pd(x), y0 = _mm256_floor_pd(y);
			__m128 fx = _mm256_cvtpd_ps(_mm256_sub_pd(x, x0)), fy = _mm256_cvtpd_ps(_mm256_sub_pd(y, y0));
			__m128i ix = _mm256_cvttpd_epi32(x0), iy = _mm256_cvttpd_epi32(y0);
			__m128i ix0 = _mm_min_epi32(_mm_max_epi32(ix, zero), wmax);
			__m128i ix1 = _mm_min_epi32(_mm_max_epi32(_mm_add_epi32(ix, one), zero), wmax);
			__m128i r0 = _mm_mullo_epi32(_mm_min_epi32(_mm_max_epi32(iy, zero), hmax), vw);
			__m128i r1 = _mm_mullo_epi32(_mm_min_epi32(_mm_max_epi32(_mm_add_epi32(iy, one), zero), hmax), vw);
			__m128 p00 = _mm_i32gather_ps(src, _mm_add_epi32(r0, ix0), 4);
			__m128 p01 = _mm_i32gather_ps(src, _mm_add_epi32(r0, ix1), 4);
			__m128 p10 = _mm_i32gather_ps(src, _mm_add_epi32(r1, ix0), 4);
			__m128 p11 = _mm_i32gather_ps(src, _mm_add_epi32(r1, ix1), 4);
			__m128 va = _mm_add_ps(p00, _mm_mul_ps(_mm_sub_ps(p01, p00), fx));
			__m128 vb = _mm_add_ps(p10, _mm_mul_ps(_mm_sub_ps(p11, p10), fx));
			_mm_storeu_ps(buf + j * WIN + i, _mm_add_ps(va, _mm_mul_ps(_mm_sub_ps(vb, va), fy)));
		}
	}
}
#endif
static void sample_base(const float *src, int w, int h, double cx, double cy, double half, double step, double ux,
	double uy, double vx, double vy, double sc, float *buf) {
	sample_body(src, w, h, cx, cy, half, step, ux, uy, vx, vy, sc, buf);
}

int nd_window(const float *src, int w, int h, double cx, double cy, double half, double step,
	double ux, double uy, double vx, double vy, double sc, float *buf) {
#ifdef ND_AVX2
	if (have_avx2()) {
		sample_avx2(src, w, h, cx, cy, half, step, ux, uy, vx, vy, sc, buf);
	} else
#endif
		sample_base(src, w, h, cx, cy, half, step, ux, uy, vx, vy, sc, buf);
	double s = 0, s2 = 0;
	for (int i = 0; i < WIN * WIN; i++) {
		s += (double)buf[i];
		s2 += (double)buf[i] * (double)buf[i];
	}
	double n = WIN * WIN;
	double var = s2 / n - (s / n) * (s / n);
	if (!(var >= 0)) {
		var = 0;
	}
	double std = sqrt(var);
	if (std < 1) {
		return -1;
	}
	float k = (float)(40 / std);
	float g[WIN * WIN];
	for (int i = 0; i < WIN * WIN; i++) {
		g[i] = buf[i] * k;
	}
	// gridQuality's sum, its horizontal and vertical neighbour terms in
	// two loops (an integer sum, so the order does not matter).
	int sum = 0;
	for (int y = 0; y < WIN; y++) {
		for (int x = 0; x + 1 < WIN; x++) {
			int d = (int)((g[y * WIN + x] - g[y * WIN + x + 1]) * 100.0f / 255.0f);
			sum += d < 0 ? -d : d;
		}
	}
	for (int i = 0; i < (WIN - 1) * WIN; i++) {
		int d = (int)((g[i] - g[i + WIN]) * 100.0f / 255.0f);
		sum += d < 0 ? -d : d;
	}
	long pairs = 2 * WIN * (WIN - 1);
	long q = (long)sum * 8064 / (pairs * 90 * 2);
	return q < 100 ? (int)q : 100;
}

// nd_coeffs is winCoeffs: t = D*G row by row, then out[i][j] = sum_k
// t[i][k]*D[j][k] in order.
void nd_coeffs(const float *restrict g, const float *restrict dct, const float *restrict dt, float *restrict out) {
	float t[FREQS][WIN];
	memset(t, 0, sizeof t);
	for (int i = 0; i < FREQS; i++) {
		for (int k = 0; k < WIN; k++) {
			float d = dct[i * WIN + k];
			const float *row = g + k * WIN;
			for (int j = 0; j < WIN; j++) {
				t[i][j] += d * row[j];
			}
		}
	}
	// out[i][j] = sum over k of t[i][k]*D[j][k], in k order, for all j at
	// once (dt is D transposed).
	for (int i = 0; i < FREQS; i++) {
		float acc[FREQS];
		for (int j = 0; j < FREQS; j++) {
			acc[j] = 0;
		}
		for (int k = 0; k < WIN; k++) {
			float tk = t[i][k];
			const float *d = dt + k * FREQS;
			for (int j = 0; j < FREQS; j++) {
				acc[j] += tk * d[j];
			}
		}
		for (int j = 0; j < FREQS; j++) {
			out[i * FREQS + j] = acc[j];
		}
	}
}

// nd_resample is resampleArea with its weights flattened: output row i of
// the vertical pass takes yoff[i+1]-yoff[i] rows from ystart[i] with
// weights yw[yoff[i]...], and likewise across x.
void nd_resample(const float *restrict src, int w, int h, int dw, int dh,
	const int *ystart, const int *yoff, const float *yw,
	const int *xstart, const int *xoff, const float *xw, float *restrict tmp, float *restrict dst) {
	(void)h;
	for (int i = 0; i < dh; i++) {
		float *restrict out = tmp + (long)i * w;
		for (int x = 0; x < w; x++) {
			out[x] = 0;
		}
		for (int j = 0; j < yoff[i + 1] - yoff[i]; j++) {
			float wt = yw[yoff[i] + j];
			const float *in = src + (long)(ystart[i] + j) * w;
			for (int x = 0; x < w; x++) {
				out[x] += wt * in[x];
			}
		}
	}
	for (int y = 0; y < dh; y++) {
		const float *row = tmp + (long)y * w;
		float *out = dst + (long)y * dw;
		for (int i = 0; i < dw; i++) {
			float s = 0;
			const float *ws = xw + xoff[i];
			const float *r = row + xstart[i];
			int n = xoff[i + 1] - xoff[i];
			for (int j = 0; j < n; j++) {
				s += ws[j] * r[j];
			}
			out[i] = s;
		}
	}
}

// nd_canon is canonical's sums: the deviations from the mean of the right
// half minus the left (sx), the lower half minus the upper (sy) and their
// absolute values (dev), in float64 in canonical's order.
void nd_canon(const float *buf, double *out) {
	double mean = 0;
	for (int i = 0; i < WIN * WIN; i++) {
		mean += (double)buf[i];
	}
	mean /= (double)(WIN * WIN);
	double sx = 0, sy = 0, dev = 0;
	for (int j = 0; j < WIN; j++) {
		for (int i = 0; i < WIN; i++) {
			double v = (double)buf[j * WIN + i] - mean;
			dev += fabs(v);
			if (i >= WIN / 2) {
				sx += v;
			} else {
				sx -= v;
			}
			if (j >= WIN / 2) {
				sy += v;
			} else {
				sy -= v;
			}
		}
	}
	out[0] = sx;
	out[1] = sy;
	out[2] = dev;
}

// kth is the Go kth: quickselect with a median-of-three pivot.
static float kth(float *s, int n, int k) {
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		float a = s[lo], b = s[mid], c = s[hi];
		float mn = a < b ? a : b, mx = a < b ? b : a;
		float m2 = mx < c ? mx : c;
		float p = mn < m2 ? m2 : mn;
		int i = lo, j = hi;
		while (i <= j) {
			while (s[i] < p) {
				i++;
			}
			while (s[j] > p) {
				j--;
			}
			if (i <= j) {
				float t = s[i];
				s[i] = s[j];
				s[j] = t;
				i++;
				j--;
			}
		}
		if (k <= j) {
			hi = j;
		} else if (k >= i) {
			lo = i;
		} else {
			return s[k];
		}
	}
	return s[k];
}

// nd_hash is coeffHash: variant (transpose, negRows, negCols) of the
// FREQS x FREQS coefficients c thresholded at their median into h (32
// bytes, PDQ's bit order).
void nd_hash(const float *c, int transpose, int neg_rows, int neg_cols, unsigned char *h) {
	float v[FREQS * FREQS], s[FREQS * FREQS];
	for (int i = 0; i < FREQS; i++) {
		for (int j = 0; j < FREQS; j++) {
			float x = c[i * FREQS + j];
			if ((neg_rows && (i & 1) == 0) != (neg_cols && (j & 1) == 0)) {
				x = -x;
			}
			if (transpose) {
				v[j * FREQS + i] = x;
			} else {
				v[i * FREQS + j] = x;
			}
		}
	}
	memcpy(s, v, sizeof s);
	float med = kth(s, FREQS * FREQS, FREQS * FREQS / 2 - 1);
	memset(h, 0, 32);
	for (int k = 0; k < FREQS * FREQS; k++) {
		if (v[k] > med) {
			h[31 - (k >> 3)] |= (unsigned char)(1 << (k & 7));
		}
	}
}
