// The hot loops of the window pipeline in C: the separable Gaussian blur,
// the difference-of-Gaussian extremum scan, window sampling with its
// quality, the window DCT and hash, and the area resampling. Each output
// is computed by the same float32 and float64 operations in the same order
// as the Go code (plane.go, keypoints.go, windows.go, winhash.go), without
// contraction into fused multiply-adds, so the results are bit for bit the
// Go code's (fast_test.go). Vectorisation runs across independent outputs
// only (each vector lane does one output's scalar operations; no sum is
// reassociated). Where the CPU has AVX2 (the caller says so) the same
// loops run compiled for it.

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

static void canon_sums(const float *buf, double mean, double *out);

// v8 is eight floats at any float's address; its arithmetic is lane by
// lane IEEE float32 (two SSE vectors, or one AVX one).
typedef float v8 __attribute__((vector_size(32), aligned(4)));

#define LD(p) (*(const v8 *)(p))
#define ST(p, v) (*(v8 *)(p) = (v))

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
// t = 0..rad-1, out += k[t]*(lo+hi); eight outputs are kept in a vector
// through all the taps.
INLINE void blur_rad(const float *restrict src, int w, int h, const float *restrict k, int rad,
	float *restrict tmp, float *restrict pad, float *restrict dst) {
	const float kc = k[rad];
	for (int y = 0; y < h; y++) {
		const float *row = src + (long)y * w;
		memcpy(pad + rad, row, (size_t)w * sizeof(float));
		for (int i = 0; i < rad; i++) {
			pad[i] = row[0];
			pad[rad + w + i] = row[w - 1];
		}
		float *out = tmp + (long)y * w;
		const float *mid = pad + rad;
		int x = 0;
		for (; x + 8 <= w; x += 8) {
			v8 acc = kc * LD(mid + x);
			for (int t = 0; t < rad; t++) {
				acc += k[t] * (LD(pad + t + x) + LD(pad + 2 * rad - t + x));
			}
			ST(out + x, acc);
		}
		for (; x < w; x++) {
			float acc = kc * mid[x];
			for (int t = 0; t < rad; t++) {
				acc += k[t] * (pad[t + x] + pad[2 * rad - t + x]);
			}
			out[x] = acc;
		}
	}
	const float *lo[ND_MAX_RAD], *hi[ND_MAX_RAD];
	for (int y = 0; y < h; y++) {
		float *out = dst + (long)y * w;
		const float *mid = tmp + (long)y * w;
		for (int t = 0; t < rad; t++) {
			lo[t] = tmp + (long)clampi(y + t - rad, h) * w;
			hi[t] = tmp + (long)clampi(y + rad - t, h) * w;
		}
		int x = 0;
		for (; x + 8 <= w; x += 8) {
			v8 acc = kc * LD(mid + x);
			for (int t = 0; t < rad; t++) {
				acc += k[t] * (LD(lo[t] + x) + LD(hi[t] + x));
			}
			ST(out + x, acc);
		}
		for (; x < w; x++) {
			float acc = kc * mid[x];
			for (int t = 0; t < rad; t++) {
				acc += k[t] * (lo[t][x] + hi[t][x]);
			}
			out[x] = acc;
		}
	}
}

// blur_body is blur_rad with the radius a constant for the usual ones
// (the loops over the taps unrolled, the taps in registers).
INLINE void blur_body(const float *restrict src, int w, int h, const float *restrict k, int rad,
	float *restrict tmp, float *restrict pad, float *restrict dst) {
	switch (rad) {
#define ND_RAD(r)                                             \
	case r:                                               \
		blur_rad(src, w, h, k, r, tmp, pad, dst); \
		return;
		ND_RAD(1)
		ND_RAD(2)
		ND_RAD(3)
		ND_RAD(4)
		ND_RAD(5)
		ND_RAD(6)
		ND_RAD(7)
		ND_RAD(8)
#undef ND_RAD
	}
	blur_rad(src, w, h, k, rad, tmp, pad, dst);
}

// dog_body fills dogs[i] = levels[i+1] - levels[i] (ndog planes of n).
INLINE void dog_body(const float *restrict lv, long n, int ndog, float *restrict dogs) {
	for (int i = 0; i < ndog; i++) {
		const float *a = lv + i * n, *b = lv + (i + 1) * n;
		float *restrict d = dogs + i * n;
		for (long j = 0; j < n; j++) {
			d[j] = b[j] - a[j];
		}
	}
}

// mark_body sets m[x] for the pixels x0..x1-1 of a row of DoG level d1
// that pass detect's first tests: |v| >= thr (thr is the least float32 at
// or above minResp) and no neighbour in the level's 3x3 block above a
// positive v, none below a negative one (no neighbour above v is the
// largest not above v: the values are finite). The levels below and above
// are checked for the few that pass (full_check).
INLINE void mark_body(const float *restrict d1, int w, int x0, int x1, float thr, int32_t *restrict m) {
#define ND_MX(a, b) ((a) > (b) ? (a) : (b))
#define ND_MN(a, b) ((a) < (b) ? (a) : (b))
	for (int x = x0; x < x1; x++) {
		const float *p = d1;
		float v = p[x];
		float n0 = p[x - w - 1], n1 = p[x - w], n2 = p[x - w + 1], n3 = p[x - 1], n4 = p[x + 1],
		      n5 = p[x + w - 1], n6 = p[x + w], n7 = p[x + w + 1];
		float mx = ND_MX(ND_MX(ND_MX(n0, n1), ND_MX(n2, n3)), ND_MX(ND_MX(n4, n5), ND_MX(n6, n7)));
		float mn = ND_MN(ND_MN(ND_MN(n0, n1), ND_MN(n2, n3)), ND_MN(ND_MN(n4, n5), ND_MN(n6, n7)));
		int big = fabsf(v) >= thr;
		int pos = v > 0;
		m[x] = big & ((pos & (mx <= v)) | (!pos & (mn >= v)));
	}
#undef ND_MX
#undef ND_MN
}

// full_check is the rest of extremum for pixel x of a marked row: the
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

// scan_body computes the five DoG planes of an octave's six levels into
// dogs and writes the candidates of detect's scan, in its order (level s =
// 1..3, then rows, then columns), as s*w*h + y*w + x; it returns their
// number.
INLINE long scan_body(const float *levels, int w, int h, int bd, float thr, float *dogs, int *out) {
	long n = (long)w * h;
	dog_body(levels, n, 5, dogs);
	if (bd >= w - bd) {
		return 0;
	}
	int32_t m[w + 8];
	long c = 0;
	for (int s = 1; s < 4; s++) {
		const float *d0 = dogs + (s - 1) * n, *d1 = dogs + s * n, *d2 = dogs + (s + 1) * n;
		for (int y = bd; y < h - bd; y++) {
			long r = (long)y * w;
			mark_body(d1 + r, w, bd, w - bd, thr, m);
			memset(m + w - bd, 0, ((size_t)bd + 8) * sizeof m[0]);
			// Most pixels are not marked: skip them eight at a time.
			for (int x0 = bd; x0 < w - bd; x0 += 8) {
				if ((m[x0] | m[x0 + 1] | m[x0 + 2] | m[x0 + 3] | m[x0 + 4] | m[x0 + 5] | m[x0 + 6] | m[x0 + 7]) == 0) {
					continue;
				}
				for (int x = x0; x < x0 + 8 && x < w - bd; x++) {
					if (m[x] && full_check(d0 + r, d2 + r, x, w, d1[r + x])) {
						out[c++] = (int)(s * n + r + x);
					}
				}
			}
		}
	}
	return c;
}

// coeffs_body is winCoeffs: t = D*G (row i of t summed over k in order,
// a row kept in four vectors), then out[i][j] = sum over k of
// t[i][k]*D[j][k] in order (dt is D transposed: all j at once).
INLINE void coeffs_body(const float *restrict g, const float *restrict dct, const float *restrict dt,
	float *restrict out) {
	float t[FREQS][WIN];
	for (int i = 0; i < FREQS; i++) {
		v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
		for (int k = 0; k < WIN; k++) {
			float d = dct[i * WIN + k];
			const float *row = g + k * WIN;
			a0 += d * LD(row);
			a1 += d * LD(row + 8);
			a2 += d * LD(row + 16);
			a3 += d * LD(row + 24);
		}
		ST(t[i], a0);
		ST(t[i] + 8, a1);
		ST(t[i] + 16, a2);
		ST(t[i] + 24, a3);
	}
	for (int i = 0; i < FREQS; i++) {
		v8 a0 = {0}, a1 = {0};
		for (int k = 0; k < WIN; k++) {
			float tk = t[i][k];
			a0 += tk * LD(dt + k * FREQS);
			a1 += tk * LD(dt + k * FREQS + 8);
		}
		ST(out + i * FREQS, a0);
		ST(out + i * FREQS + 8, a1);
	}
}


#ifdef ND_AVX2
__attribute__((target("avx2"))) static void blur_avx2(const float *src, int w, int h, const float *k, int rad,
	float *tmp, float *pad, float *dst) {
	blur_body(src, w, h, k, rad, tmp, pad, dst);
}
__attribute__((target("avx2"))) static long scan_avx2(const float *levels, int w, int h, int bd, float thr,
	float *dogs, int *out) {
	return scan_body(levels, w, h, bd, thr, dogs, out);
}
__attribute__((target("avx2"))) static void coeffs_avx2(const float *g, const float *dct, const float *dt,
	float *out) {
	coeffs_body(g, dct, dt, out);
}
#endif
static void blur_base(const float *src, int w, int h, const float *k, int rad, float *tmp, float *pad, float *dst) {
	blur_body(src, w, h, k, rad, tmp, pad, dst);
}
static long scan_base(const float *levels, int w, int h, int bd, float thr, float *dogs, int *out) {
	return scan_body(levels, w, h, bd, thr, dogs, out);
}
static void coeffs_base(const float *g, const float *dct, const float *dt, float *out) {
	coeffs_body(g, dct, dt, out);
}

// nd_blur is gaussBlurBuf over src (w x h) with the normalised kernel k
// (2*rad+1 taps, rad at most ND_MAX_RAD) into dst; tmp holds w*h floats,
// pad w+2*rad.
void nd_blur(int avx2, const float *src, int w, int h, const float *k, int rad, float *tmp, float *pad,
	float *dst) {
#ifdef ND_AVX2
	if (avx2) {
		blur_avx2(src, w, h, k, rad, tmp, pad, dst);
		return;
	}
#endif
	(void)avx2;
	blur_base(src, w, h, k, rad, tmp, pad, dst);
}

// nd_scan is scan_body; out must hold 3*w*h entries.
long nd_scan(int avx2, const float *levels, int w, int h, int bd, float thr, float *dogs, int *out) {
#ifdef ND_AVX2
	if (avx2) {
		return scan_avx2(levels, w, h, bd, thr, dogs, out);
	}
#endif
	(void)avx2;
	return scan_base(levels, w, h, bd, thr, dogs, out);
}

// nd_coeffs is coeffs_body.
void nd_coeffs(int avx2, const float *g, const float *dct, const float *dt, float *out) {
#ifdef ND_AVX2
	if (avx2) {
		coeffs_avx2(g, dct, dt, out);
		return;
	}
#endif
	(void)avx2;
	coeffs_base(g, dct, dt, out);
}

// sample_body is sampleWindow's sampling loop.
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
// rounding to nearest as Go's).
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
	int a00[WIN], a01[WIN], a10[WIN], a11[WIN];
	float fxs[WIN], fys[WIN], p00[WIN], p01[WIN], p10[WIN], p11[WIN];
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
			_mm_storeu_si128((__m128i *)(a00 + i), _mm_add_epi32(r0, ix0));
			_mm_storeu_si128((__m128i *)(a01 + i), _mm_add_epi32(r0, ix1));
			_mm_storeu_si128((__m128i *)(a10 + i), _mm_add_epi32(r1, ix0));
			_mm_storeu_si128((__m128i *)(a11 + i), _mm_add_epi32(r1, ix1));
			_mm_storeu_ps(fxs + i, fx);
			_mm_storeu_ps(fys + i, fy);
		}
		// The corners fetched one by one (faster than gathers on some
		// CPUs), then the interpolation eight points at a time.
		for (int i = 0; i < WIN; i++) {
			p00[i] = src[a00[i]];
			p01[i] = src[a01[i]];
			p10[i] = src[a10[i]];
			p11[i] = src[a11[i]];
		}
		for (int i = 0; i < WIN; i += 8) {
			__m256 q00 = _mm256_loadu_ps(p00 + i), q01 = _mm256_loadu_ps(p01 + i);
			__m256 q10 = _mm256_loadu_ps(p10 + i), q11 = _mm256_loadu_ps(p11 + i);
			__m256 fx = _mm256_loadu_ps(fxs + i), fy = _mm256_loadu_ps(fys + i);
			__m256 va = _mm256_add_ps(q00, _mm256_mul_ps(_mm256_sub_ps(q01, q00), fx));
			__m256 vb = _mm256_add_ps(q10, _mm256_mul_ps(_mm256_sub_ps(q11, q10), fx));
			_mm256_storeu_ps(buf + j * WIN + i, _mm256_add_ps(va, _mm256_mul_ps(_mm256_sub_ps(vb, va), fy)));
		}
	}
}
#endif
// nd_window is sampleWindow's sampling loop and normQuality: it fills buf
// (WIN x WIN) and returns the quality, or -1 for a window flatter than one
// grey level. For a quality of minq or more it also computes canonical's
// sums (nd_canon) and the DCT coefficients (nd_coeffs).
int nd_window(int avx2, const float *src, int w, int h, double cx, double cy, double half, double step,
	double ux, double uy, double vx, double vy, double sc, float *buf, int minq, const float *dct,
	const float *dt, float *coeffs, double *canon) {
#ifdef ND_AVX2
	if (avx2) {
		sample_avx2(src, w, h, cx, cy, half, step, ux, uy, vx, vy, sc, buf);
	} else
#endif
	{
		(void)avx2;
		sample_body(src, w, h, cx, cy, half, step, ux, uy, vx, vy, sc, buf);
	}
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
	q = q < 100 ? q : 100;
	if (q >= minq) {
		// canonical's mean is the same sum of the same values.
		canon_sums(buf, s / n, canon);
		nd_coeffs(avx2, buf, dct, dt, coeffs);
	}
	return (int)q;
}

// resample_v is resampleArea's vertical pass: output row i of tmp takes
// yoff[i+1]-yoff[i] rows from ystart[i] with weights yw[yoff[i]...],
// summed from zero in order.
INLINE void resample_v(const float *restrict src, int w, int dh, const int *ystart, const int *yoff,
	const float *yw, float *restrict tmp) {
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
}

// resample_h is the horizontal pass, one output at a time.
// resample_dot is one output of the horizontal resampling pass: the
// weights of output i over its input span, summed in order.
static inline float resample_dot(const float *row, const float *xw, const int *xstart, const int *xoff, int i) {
	float s = 0;
	const float *ws = xw + xoff[i];
	const float *r = row + xstart[i];
	int n = xoff[i + 1] - xoff[i];
	for (int j = 0; j < n; j++) {
		s += ws[j] * r[j];
	}
	return s;
}

static void resample_h(const float *restrict tmp, int w, int dw, int dh, const int *xstart, const int *xoff,
	const float *xw, float *restrict dst) {
	(void)w;
	for (int y = 0; y < dh; y++) {
		const float *row = tmp + (long)y * w;
		float *out = dst + (long)y * dw;
		for (int i = 0; i < dw; i++) {
			out[i] = resample_dot(row, xw, xstart, xoff, i);
		}
	}
}

#ifdef ND_AVX2
__attribute__((target("avx2"))) static void resample_v_avx2(const float *src, int w, int dh, const int *ystart,
	const int *yoff, const float *yw, float *tmp) {
	resample_v(src, w, dh, ystart, yoff, yw, tmp);
}

// resample_h_avx2 is resample_h for eight outputs at once (gathers). A
// lane whose output has fewer weights than the longest of the eight adds
// products with weight zero: each adds a zero to a sum that started at +0
// and so is never -0 (the inputs are finite), which leaves the sum as it
// was. wv and iv (xblocks*8*maxn each) are scratch.
__attribute__((target("avx2"))) static void resample_h_avx2(const float *tmp, int w, int dw, int dh,
	const int *xstart, const int *xoff, const float *xw, float *dst, float *wv, int *iv, int maxn) {
	int blocks = dw / 8;
	for (int b = 0; b < blocks; b++) {
		for (int j = 0; j < maxn; j++) {
			for (int l = 0; l < 8; l++) {
				int i = b * 8 + l;
				int n = xoff[i + 1] - xoff[i];
				wv[(b * maxn + j) * 8 + l] = j < n ? xw[xoff[i] + j] : 0;
				int idx = xstart[i] + (j < n ? j : 0);
				iv[(b * maxn + j) * 8 + l] = idx < w ? idx : w - 1;
			}
		}
	}
	for (int y = 0; y < dh; y++) {
		const float *row = tmp + (long)y * w;
		float *out = dst + (long)y * dw;
		for (int b = 0; b < blocks; b++) {
			int m = 0;
			for (int l = 0; l < 8; l++) {
				int i = b * 8 + l;
				int n = xoff[i + 1] - xoff[i];
				m = n > m ? n : m;
			}
			__m256 acc = _mm256_setzero_ps();
			for (int j = 0; j < m; j++) {
				__m256 wt = _mm256_loadu_ps(wv + (b * maxn + j) * 8);
				__m256i ix = _mm256_loadu_si256((const __m256i *)(iv + (b * maxn + j) * 8));
				acc = _mm256_add_ps(acc, _mm256_mul_ps(wt, _mm256_i32gather_ps(row, ix, 4)));
			}
			_mm256_storeu_ps(out + b * 8, acc);
		}
		for (int i = blocks * 8; i < dw; i++) {
			out[i] = resample_dot(row, xw, xstart, xoff, i);
		}
	}
}
#endif

// nd_resample is resampleArea with its weights flattened (output i of a
// pass: weights w[off[i]:off[i+1]] from input start[i]); maxn is the most
// weights of an x output, wv and iv scratch of dw*maxn entries (AVX2).
void nd_resample(int avx2, const float *src, int w, int h, int dw, int dh, const int *ystart, const int *yoff,
	const float *yw, const int *xstart, const int *xoff, const float *xw, int maxn, float *wv, int *iv,
	float *tmp, float *dst) {
	(void)h;
#ifdef ND_AVX2
	if (avx2) {
		resample_v_avx2(src, w, dh, ystart, yoff, yw, tmp);
		resample_h_avx2(tmp, w, dw, dh, xstart, xoff, xw, dst, wv, iv, maxn);
		return;
	}
#endif
	(void)avx2;
	(void)maxn;
	(void)wv;
	(void)iv;
	resample_v(src, w, dh, ystart, yoff, yw, tmp);
	resample_h(tmp, w, dw, dh, xstart, xoff, xw, dst);
}

// nd_canon is canonical's sums: the deviations from the mean of the right
// half minus the left (sx), the lower half minus the upper (sy) and their
// absolute values (dev), in float64 in canonical's order.
void nd_canon(const float *buf, double *out) {
	double mean = 0;
	for (int i = 0; i < WIN * WIN; i++) {
		mean += (double)buf[i];
	}
	canon_sums(buf, mean / (double)(WIN * WIN), out);
}

// canon_sums is nd_canon given the mean.
static void canon_sums(const float *buf, double mean, double *out) {
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

// kth_key returns the k-th smallest (0-based) of the n order keys (see
// nd_hash), built bit by bit: the largest key with at most k keys below
// it. Branch-free counting; the same value as any selection.
INLINE int32_t kth_key(const int32_t *keys, int n, int k) {
	uint32_t ans = 0; // biased: ans ^ 0x80000000 is the signed key
	for (int bit = 31; bit >= 0; bit--) {
		uint32_t cand = ans | (1u << bit);
		int32_t c = (int32_t)(cand ^ 0x80000000u);
		int below = 0;
		for (int i = 0; i < n; i++) {
			below += keys[i] < c;
		}
		if (below <= k) {
			ans = cand;
		}
	}
	return (int32_t)(ans ^ 0x80000000u);
}

// nd_hash is coeffHash: variant (transpose, negRows, negCols) of the
// FREQS x FREQS coefficients c thresholded at their median into h (32
// bytes, PDQ's bit order).
INLINE void hash_body(const float *c, int transpose, int neg_rows, int neg_cols, unsigned char *h) {
	float v[FREQS * FREQS];
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
	// The median as kth finds it: the value at index 127 of the sorted
	// coefficients. Selected on keys that order as the floats do (-0
	// before +0, which compare equal below, so the bits are the same).
	int32_t keys[FREQS * FREQS];
	for (int k = 0; k < FREQS * FREQS; k++) {
		int32_t b;
		memcpy(&b, &v[k], 4);
		keys[k] = b < 0 ? b ^ 0x7fffffff : b;
	}
	int32_t mk = kth_key(keys, FREQS * FREQS, FREQS * FREQS / 2 - 1);
	mk = mk < 0 ? mk ^ 0x7fffffff : mk;
	float med;
	memcpy(&med, &mk, 4);
	for (int b = 0; b < 32; b++) {
		unsigned byte = 0;
		for (int k = 0; k < 8; k++) {
			byte |= (unsigned)(v[8 * b + k] > med) << k;
		}
		h[31 - b] = (unsigned char)byte;
	}
}

#ifdef ND_AVX2
__attribute__((target("avx2"))) static void hash_avx2(const float *c, int transpose, int neg_rows, int neg_cols,
	unsigned char *h) {
	hash_body(c, transpose, neg_rows, neg_cols, h);
}
#endif
static void hash_base(const float *c, int transpose, int neg_rows, int neg_cols, unsigned char *h) {
	hash_body(c, transpose, neg_rows, neg_cols, h);
}

void nd_hash(int avx2, const float *c, int transpose, int neg_rows, int neg_cols, unsigned char *h) {
#ifdef ND_AVX2
	if (avx2) {
		hash_avx2(c, transpose, neg_rows, neg_cols, h);
		return;
	}
#endif
	(void)avx2;
	hash_base(c, transpose, neg_rows, neg_cols, h);
}

// The luminance of encoders/pdq (pdq.Luma) for packed RGB rows and Y'CbCr
// rows. pdq computes float32(R[r] + G[g] + B[b]) from float64 tables R[v]
// = 0.299*v, G[v] = 0.587*v, B[v] = 0.114*v: the float64 sum is within
// 1e-15 (relative) of n/1000, n = 299r + 587g + 114b, and n/1000 is never
// that close to a point halfway between two float32s (it is at least
// 4e-10, relative, away: such a point is an odd multiple of a power of
// two, n/1000 is not), so the float32 is n/1000 correctly rounded: the
// float32 division of the integer n (exact in float32) by 1000. That is
// what is computed here, in integers and one division; TestFastLuma-
// Exhaustive checks every triple. Y'CbCr pixels are converted by
// color.YCbCrToRGB's fixed-point arithmetic, its clamp written without
// branches.

INLINE float luma8(int32_t r, int32_t g, int32_t b) {
	return (float)(299 * r + 587 * g + 114 * b) / 1000.0f;
}

INLINE void luma_rgb_body(const unsigned char *restrict row, int n, float *restrict dst) {
	for (int x = 0; x < n; x++) {
		dst[x] = luma8(row[3 * x], row[3 * x + 1], row[3 * x + 2]);
	}
}

// clamp16 is YCbCrToRGB's clamp of a 16.16 fixed-point value to 0..255.
INLINE int32_t clamp16(int32_t v) {
	v = v < 0 ? 0 : v;
	v = v > 0xffffff ? 0xffffff : v;
	return v >> 16;
}

INLINE float ycc_luma(int32_t y, int32_t cb, int32_t cr) {
	int32_t cb1 = cb - 128, cr1 = cr - 128;
	int32_t rc = 91881 * cr1, gc = -22554 * cb1 - 46802 * cr1, bc = 116130 * cb1;
	int32_t yy = y * 0x10101;
	return luma8(clamp16(yy + rc), clamp16(yy + gc), clamp16(yy + bc));
}

// ycc_body converts n pixels, each with its chroma sample (paired == 0)
// or two by two sharing one.
INLINE void ycc_body(const unsigned char *restrict ys, const unsigned char *restrict cb,
	const unsigned char *restrict cr, int n, int paired, float *restrict dst) {
	if (!paired) {
		for (int x = 0; x < n; x++) {
			dst[x] = ycc_luma(ys[x], cb[x], cr[x]);
		}
		return;
	}
	for (int c = 0; c < n / 2; c++) {
		dst[2 * c] = ycc_luma(ys[2 * c], cb[c], cr[c]);
		dst[2 * c + 1] = ycc_luma(ys[2 * c + 1], cb[c], cr[c]);
	}
	if (n & 1) {
		dst[n - 1] = ycc_luma(ys[n - 1], cb[n / 2], cr[n / 2]);
	}
}

#ifdef ND_AVX2
__attribute__((target("avx2"))) static void luma_rgb_avx2(const unsigned char *row, int n, float *dst) {
	luma_rgb_body(row, n, dst);
}
__attribute__((target("avx2"))) static void ycc_avx2(const unsigned char *ys, const unsigned char *cb,
	const unsigned char *cr, int n, int paired, float *dst) {
	ycc_body(ys, cb, cr, n, paired, dst);
}
#endif
static void luma_rgb_base(const unsigned char *row, int n, float *dst) { luma_rgb_body(row, n, dst); }
static void ycc_base(const unsigned char *ys, const unsigned char *cb, const unsigned char *cr, int n, int paired,
	float *dst) {
	ycc_body(ys, cb, cr, n, paired, dst);
}

// nd_luma_rgb converts n packed RGB pixels.
void nd_luma_rgb(int avx2, const unsigned char *row, int n, float *dst) {
#ifdef ND_AVX2
	if (avx2) {
		luma_rgb_avx2(row, n, dst);
		return;
	}
#endif
	(void)avx2;
	luma_rgb_base(row, n, dst);
}

// nd_luma_ycbcr converts a row of n Y'CbCr pixels: with paired == 0 each
// pixel has its chroma sample; otherwise pixels share one in twos, the
// first alone when odd.
void nd_luma_ycbcr(int avx2, const unsigned char *ys, const unsigned char *cb, const unsigned char *cr, int n,
	int paired, int odd, float *dst) {
	if (n <= 0) {
		return;
	}
	if (paired && odd) {
		dst[0] = ycc_luma(ys[0], cb[0], cr[0]);
		ys++;
		cb++;
		cr++;
		dst++;
		n--;
	}
#ifdef ND_AVX2
	if (avx2) {
		ycc_avx2(ys, cb, cr, n, paired, dst);
		return;
	}
#endif
	(void)avx2;
	ycc_base(ys, cb, cr, n, paired, dst);
}

// nd_flat_lines is content.go's flatness test (isFlat) of every row
// (horiz) or every column of the rectangle [x0,x1) x [y0,y1) of a plane of
// the given stride, writing 1 (flat) or 0 per line to flat. Rows are tested
// one by one, stopping at the first value too many off the median; columns
// all at once, row by row, in hist (65 + 1 ints a column).
void nd_flat_lines(const float *p, int stride, int x0, int y0, int x1, int y1, int horiz, int *hist,
	unsigned char *flat) {
	int w = x1 - x0, h = y1 - y0;
	int n = horiz ? w : h;
	int allowed = n - (int)ceil(0.95 * (double)n);
	if (horiz) {
		for (int y = y0; y < y1; y++) {
			const float *line = p + (long)y * stride + x0;
			int hs[65];
			memset(hs, 0, sizeof hs);
			for (int i = 0; i < w; i++) {
				int b = (int)line[i] / 4;
				b = b < 0 ? 0 : (b > 64 ? 64 : b);
				hs[b]++;
			}
			int half = w / 2, acc = 0, bin = 0;
			for (int b = 0; b < 65; b++) {
				acc += hs[b];
				if (acc > half) {
					bin = b;
					break;
				}
			}
			float med = (float)(bin * 4 + 2);
			int left = allowed, ok = 1;
			for (int i = 0; i < w; i++) {
				float d = line[i] - med;
				if (d > 6.0f || d < -6.0f) {
					if (--left < 0) {
						ok = 0;
						break;
					}
				}
			}
			flat[y - y0] = (unsigned char)ok;
		}
		return;
	}
	memset(hist, 0, sizeof(int) * 66 * (size_t)w);
	for (int y = y0; y < y1; y++) {
		const float *row = p + (long)y * stride + x0;
		for (int x = 0; x < w; x++) {
			int b = (int)row[x] / 4;
			b = b < 0 ? 0 : (b > 64 ? 64 : b);
			hist[x * 66 + b]++;
		}
	}
	int half = h / 2;
	for (int x = 0; x < w; x++) {
		int *hs = hist + x * 66, acc = 0, bin = 0;
		for (int b = 0; b < 65; b++) {
			acc += hs[b];
			if (acc > half) {
				bin = b;
				break;
			}
		}
		hs[0] = bin * 4 + 2; // the median, once the counts are read
		hs[65] = 0;          // strays
	}
	for (int y = y0; y < y1; y++) {
		const float *row = p + (long)y * stride + x0;
		for (int x = 0; x < w; x++) {
			float d = row[x] - (float)hist[x * 66];
			hist[x * 66 + 65] += (d > 6.0f || d < -6.0f);
		}
	}
	for (int x = 0; x < w; x++) {
		flat[x] = (unsigned char)(hist[x * 66 + 65] <= allowed);
	}
}

// The cleaned plane's opening (clean.go): grey-level erosion then dilation
// with a square of 2*r+1 pixels, the window clipped at the borders, by van
// Herk's and Gil and Werman's running extremes over blocks of 2*r+1, then
// every pixel the opening lowers by more than lift takes the opened value.
// Minima and maxima are exact, so the plane is the Go code's bit for bit
// (the planes hold no NaN and no negative zero). Columns run a whole row
// at a time (vectorised across the row).
static inline float nd_mn(float a, float b) { return b < a ? b : a; }
static inline float nd_mx(float a, float b) { return b > a ? b : a; }

#define ND_COLS_PASS(NAME, OP, PAD)                                                                  \
	static inline void NAME(const float *in, float *out, int w, int h, int r, float *fwd, float *bwd) { \
		int k = 2 * r + 1, m = h + 2 * r;                                                            \
		for (int i = 0; i < m; i += k) {                                                             \
			int end = i + k < m ? i + k : m;                                                         \
			for (int j = i; j < end; j++) {                                                          \
				float *cur = fwd + (size_t)j * w;                                                    \
				const float *src = (j < r || j >= r + h) ? 0 : in + (size_t)(j - r) * w;             \
				if (j == i) {                                                                        \
					for (int x = 0; x < w; x++) cur[x] = src ? src[x] : PAD;                         \
				} else {                                                                             \
					const float *prev = cur - w;                                                     \
					if (src) {                                                                       \
						for (int x = 0; x < w; x++) cur[x] = OP(prev[x], src[x]);                    \
					} else {                                                                         \
						for (int x = 0; x < w; x++) cur[x] = OP(prev[x], PAD);                       \
					}                                                                                \
				}                                                                                    \
			}                                                                                        \
			for (int j = end - 1; j >= i; j--) {                                                     \
				float *cur = bwd + (size_t)j * w;                                                    \
				const float *src = (j < r || j >= r + h) ? 0 : in + (size_t)(j - r) * w;             \
				if (j == end - 1) {                                                                  \
					for (int x = 0; x < w; x++) cur[x] = src ? src[x] : PAD;                         \
				} else {                                                                             \
					const float *next = cur + w;                                                     \
					if (src) {                                                                       \
						for (int x = 0; x < w; x++) cur[x] = OP(next[x], src[x]);                    \
					} else {                                                                         \
						for (int x = 0; x < w; x++) cur[x] = OP(next[x], PAD);                       \
					}                                                                                \
				}                                                                                    \
			}                                                                                        \
		}                                                                                            \
		for (int y = 0; y < h; y++) {                                                                \
			const float *b = bwd + (size_t)y * w, *f = fwd + (size_t)(y + 2 * r) * w;                \
			float *o = out + (size_t)y * w;                                                          \
			for (int x = 0; x < w; x++) o[x] = OP(b[x], f[x]);                                       \
		}                                                                                            \
	}

ND_COLS_PASS(erode_cols, nd_mn, INFINITY)
ND_COLS_PASS(dilate_cols, nd_mx, -INFINITY)

// transpose writes the w x h plane in to out as an h x w one, in tiles.
static inline void transpose(const float *in, float *out, int w, int h) {
	for (int y0 = 0; y0 < h; y0 += 16) {
		for (int x0 = 0; x0 < w; x0 += 16) {
			int y1 = y0 + 16 < h ? y0 + 16 : h, x1 = x0 + 16 < w ? x0 + 16 : w;
			for (int y = y0; y < y1; y++) {
				for (int x = x0; x < x1; x++) out[(size_t)x * h + y] = in[(size_t)y * w + x];
			}
		}
	}
}

// clean_body runs the row passes as column passes of the transposed plane
// (erosion and dilation are each separable, and a square's two passes
// commute): columns, transpose, rows (erode then dilate), transpose,
// columns.
static inline void clean_body(float *p, int w, int h, int r, float lift, float *a, float *b, float *fwd,
	float *bwd) {
	erode_cols(p, a, w, h, r, fwd, bwd);
	transpose(a, b, w, h);
	erode_cols(b, a, h, w, r, fwd, bwd);
	dilate_cols(a, b, h, w, r, fwd, bwd);
	transpose(b, a, h, w);
	dilate_cols(a, b, w, h, r, fwd, bwd);
	size_t n = (size_t)w * h;
	for (size_t i = 0; i < n; i++) {
		if (p[i] - b[i] > lift) p[i] = b[i];
	}
}

#ifdef ND_AVX2
__attribute__((target("avx2"))) static void clean_avx2(float *p, int w, int h, int r, float lift, float *a,
	float *b, float *fwd, float *bwd) {
	clean_body(p, w, h, r, lift, a, b, fwd, bwd);
}
#endif
static void clean_base(float *p, int w, int h, int r, float lift, float *a, float *b, float *fwd, float *bwd) {
	clean_body(p, w, h, r, lift, a, b, fwd, bwd);
}

// nd_clean is cleanPlane's opening and replacement, in place on p (w x h):
// a and b hold w*h floats, fwd and bwd each the larger of (h+2*r)*w and
// (w+2*r)*h.
void nd_clean(int avx2, float *p, int w, int h, int r, float lift, float *a, float *b, float *fwd, float *bwd) {
#ifdef ND_AVX2
	if (avx2) {
		clean_avx2(p, w, h, r, lift, a, b, fwd, bwd);
		return;
	}
#endif
	(void)avx2;
	clean_base(p, w, h, r, lift, a, b, fwd, bwd);
}
