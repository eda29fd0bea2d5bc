// The inner loops of resample.go's Pillow-exact bicubic resampler and of the
// thumbnail's box reduction, in C: integer arithmetic only, so the results
// are those of the Go code they replace, bit for bit (the parity tests pin
// them to Pillow's). Weights and geometry are computed in Go.

#include <string.h>

#include "resample.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define XR_X86 1
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline __attribute__((always_inline)) unsigned char clip8(int v) {
	if (v >= (1 << XR_PRECISION << 8)) {
		return 255;
	}
	if (v <= 0) {
		return 0;
	}
	return (unsigned char)(v >> XR_PRECISION);
}

// hpass_scalar is xr_hpass's portable loop.
static void hpass_scalar(const unsigned char *src, long stride, int rows, unsigned char *dst, int cw,
                         const int *first, const int *count, const int *weight, int ksize) {
	for (int r = 0; r < rows; r++) {
		const unsigned char *line = src + (long)r * stride;
		unsigned char *out = dst + (long)r * cw * 3;
		for (int i = 0; i < cw; i++) {
			const int *k = weight + (long)i * ksize;
			const unsigned char *p = line + (long)first[i] * 3;
			int n = count[i];
			int s0 = 1 << (XR_PRECISION - 1), s1 = s0, s2 = s0;
			for (int t = 0; t < n; t++) {
				int kt = k[t];
				s0 += p[3 * t] * kt;
				s1 += p[3 * t + 1] * kt;
				s2 += p[3 * t + 2] * kt;
			}
			out[3 * i] = clip8(s0);
			out[3 * i + 1] = clip8(s1);
			out[3 * i + 2] = clip8(s2);
		}
	}
}

#ifdef XR_X86
// hpass_sse41 is hpass_scalar with a pixel's three channels in the lanes of
// one vector (a fourth lane, the next byte, is summed and dropped): the
// same integer sums, so the same bytes. A pixel is read as four bytes, so
// the last pixel of a row (w-1), whose fourth byte may lie past the
// buffer, is read as three.
__attribute__((target("sse4.1"))) static void hpass_sse41(const unsigned char *src, long stride, int rows,
                                                         unsigned char *dst, int cw, const int *first,
                                                         const int *count, const int *weight, int ksize, int w) {
	const __m128i bias = _mm_set1_epi32(1 << (XR_PRECISION - 1));
	for (int r = 0; r < rows; r++) {
		const unsigned char *line = src + (long)r * stride;
		unsigned char *out = dst + (long)r * cw * 3;
		for (int i = 0; i < cw; i++) {
			const int *k = weight + (long)i * ksize;
			const unsigned char *p = line + (long)first[i] * 3;
			int n = count[i];
			int tail = first[i] + n >= w; // the last tap is pixel w-1
			__m128i acc = bias;
			for (int t = 0; t < n - tail; t++) {
				int u;
				memcpy(&u, p + 3 * t, 4);
				__m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(u));
				acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k[t])));
			}
			if (tail && n > 0) {
				int u = 0;
				memcpy(&u, p + 3 * (n - 1), 3);
				__m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(u));
				acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k[n - 1])));
			}
			// clip8 on each lane: the shift, then saturation to 0..255
			// (|acc| >> XR_PRECISION fits in 16 bits).
			__m128i v = _mm_srai_epi32(acc, XR_PRECISION);
			v = _mm_packs_epi32(v, v);
			v = _mm_packus_epi16(v, v);
			int b = _mm_cvtsi128_si32(v);
			memcpy(out + 3 * i, &b, 3);
		}
	}
}

static int have_sse41;

__attribute__((constructor)) static void xr_detect(void) {
	__builtin_cpu_init();
	have_sse41 = __builtin_cpu_supports("sse4.1");
}
#endif

// xr_hpass resamples rows rows of packed RGB (stride bytes apart, w pixels
// each) along x: output pixel i of a row is the weighted sum of input
// pixels first[i] .. first[i]+count[i]-1 with weights weight[i*ksize ...],
// from a half-unit bias. dst receives rows x cw packed RGB pixels.
void xr_hpass(const unsigned char *src, long stride, int w, int rows, unsigned char *dst, int cw,
              const int *first, const int *count, const int *weight, int ksize) {
#ifdef XR_X86
	if (have_sse41) {
		hpass_sse41(src, stride, rows, dst, cw, first, count, weight, ksize, w);
		return;
	}
#endif
	hpass_scalar(src, stride, rows, dst, cw, first, count, weight, ksize);
}

// vpass is xr_vpass's loop; its inner loops vectorise (compiled twice:
// baseline and SSE4.1, whose 32-bit multiply the baseline lacks).
static inline __attribute__((always_inline)) void vpass(const unsigned char *tmp, int stride, unsigned char *dst,
                                                        int ch, const int *first, const int *count,
                                                        const int *weight, int ksize, int *acc) {
	for (int j = 0; j < ch; j++) {
		const int *k = weight + (long)j * ksize;
		const unsigned char *base = tmp + (long)first[j] * stride;
		int n = count[j];
		for (int i = 0; i < stride; i++) {
			acc[i] = 1 << (XR_PRECISION - 1);
		}
		for (int t = 0; t < n; t++) {
			const unsigned char *in = base + (long)t * stride;
			int kt = k[t];
			for (int i = 0; i < stride; i++) {
				acc[i] += in[i] * kt;
			}
		}
		unsigned char *out = dst + (long)j * stride;
		for (int i = 0; i < stride; i++) {
			out[i] = clip8(acc[i]);
		}
	}
}

#ifdef XR_X86
__attribute__((target("sse4.1"))) static void vpass_sse41(const unsigned char *tmp, int stride, unsigned char *dst,
                                                         int ch, const int *first, const int *count,
                                                         const int *weight, int ksize, int *acc) {
	vpass(tmp, stride, dst, ch, first, count, weight, ksize, acc);
}
#endif

// xr_vpass resamples along y: output row j (stride bytes) is the weighted
// sum of rows first[j] .. first[j]+count[j]-1 of tmp. acc holds stride ints.
void xr_vpass(const unsigned char *tmp, int stride, unsigned char *dst, int ch,
              const int *first, const int *count, const int *weight, int ksize, int *acc) {
#ifdef XR_X86
	if (have_sse41) {
		vpass_sse41(tmp, stride, dst, ch, first, count, weight, ksize, acc);
		return;
	}
#endif
	vpass(tmp, stride, dst, ch, first, count, weight, ksize, acc);
}

// reduce_rows sums the rows y0..y1-1 of a block row into acc (T: unsigned
// short while k*255 fits, which halves the work of this loop, the bulk of
// the reduction, else unsigned int) and writes the block row's means to
// row. Whole k x k blocks divide by multiplying with the reciprocal of k*k,
// 2^40/n rounded up: exact for sums below 2^20 (n <= 4096 keeps 255*n +
// n/2 there).
#define REDUCE_ROWS(T)                                                                       \
	static void reduce_rows_##T(const unsigned char *src, long stride, int w, int y0, int y1, \
	                            int k, unsigned char *row, T *acc) {                          \
		int ow = (w + k - 1) / k;                                                            \
		int n3 = 3 * w;                                                                      \
		const unsigned char *line = src + (long)y0 * stride;                                 \
		for (int i = 0; i < n3; i++) {                                                       \
			acc[i] = line[i];                                                                \
		}                                                                                    \
		for (int y = y0 + 1; y < y1; y++) {                                                  \
			line = src + (long)y * stride;                                                   \
			for (int i = 0; i < n3; i++) {                                                   \
				acc[i] += line[i];                                                           \
			}                                                                                \
		}                                                                                    \
		int whole = (y1 - y0 == k && k * k <= 4096) ? w / k : 0;                             \
		unsigned int n = (unsigned int)(k * k);                                              \
		unsigned long long m = ((1ull << 40) + n - 1) / n;                                   \
		for (int ox = reduce_whole_##T(acc, row, k, whole); ox < whole; ox++) {              \
			const T *a = acc + 3 * ox * k;                                                   \
			unsigned int r = n / 2, g = n / 2, b = n / 2;                                    \
			for (int x = 0; x < k; x++) {                                                    \
				r += a[3 * x];                                                               \
				g += a[3 * x + 1];                                                           \
				b += a[3 * x + 2];                                                           \
			}                                                                                \
			row[3 * ox] = (unsigned char)((r * m) >> 40);                                    \
			row[3 * ox + 1] = (unsigned char)((g * m) >> 40);                                \
			row[3 * ox + 2] = (unsigned char)((b * m) >> 40);                                \
		}                                                                                    \
		for (int ox = whole; ox < ow; ox++) {                                                \
			int x0 = ox * k, x1 = x0 + k < w ? x0 + k : w;                                   \
			unsigned int n = (unsigned int)((x1 - x0) * (y1 - y0));                          \
			unsigned int r = 0, g = 0, b = 0;                                                \
			for (int x = x0; x < x1; x++) {                                                  \
				r += acc[3 * x];                                                             \
				g += acc[3 * x + 1];                                                         \
				b += acc[3 * x + 2];                                                         \
			}                                                                                \
			row[3 * ox] = (unsigned char)((r + n / 2) / n);                                  \
			row[3 * ox + 1] = (unsigned char)((g + n / 2) / n);                              \
			row[3 * ox + 2] = (unsigned char)((b + n / 2) / n);                              \
		}                                                                                    \
	}

typedef unsigned short ushort;
typedef unsigned int uint;

// reduce_whole_T writes the means of the first whole blocks of a block row
// from its column sums acc, where it has a faster way than the scalar
// loop, and returns how many it wrote.
static int reduce_whole_uint(const uint *acc, unsigned char *row, int k, int whole) {
	(void)acc, (void)row, (void)k, (void)whole;
	return 0;
}

#if defined(__SSE2__)
// For k = 2, 4, 8 with 16-bit sums: a block's k pixels are added as eight
// 16-bit lanes at a time (lanes 0-2 and 3-5 hold two pixels' channels),
// folded, and the rounded mean is a shift, as in the scalar loop. The
// loads read up to 3w+1 sums: acc has room for 6w (it is 3w unsigned
// ints), and lanes past the block are discarded.
static int reduce_whole_ushort(const ushort *acc, unsigned char *row, int k, int whole) {
	if (k != 2 && k != 4 && k != 8) {
		return 0;
	}
	int sh = k == 2 ? 2 : k == 4 ? 4 : 6;
	const __m128i half = _mm_set1_epi16((short)(1 << (sh - 1)));
	const __m128i cnt = _mm_cvtsi32_si128(sh);
	for (int ox = 0; ox < whole; ox++) {
		const ushort *a = acc + 3 * ox * k;
		__m128i v = _mm_loadu_si128((const __m128i *)a);
		for (int x = 2; x < k; x += 2) {
			v = _mm_add_epi16(v, _mm_loadu_si128((const __m128i *)(a + 3 * x)));
		}
		v = _mm_add_epi16(v, _mm_srli_si128(v, 6));
		v = _mm_srl_epi16(_mm_add_epi16(v, half), cnt);
		v = _mm_packus_epi16(v, v);
		int b = _mm_cvtsi128_si32(v);
		memcpy(row + 3 * ox, &b, 3);
	}
	return whole;
}
#else
static int reduce_whole_ushort(const ushort *acc, unsigned char *row, int k, int whole) {
	(void)acc, (void)row, (void)k, (void)whole;
	return 0;
}
#endif
REDUCE_ROWS(ushort)
REDUCE_ROWS(uint)

// xr_reduce_box shrinks a w x h packed RGB image by k in both directions:
// each output pixel is the rounded mean of its k x k block (blocks at the
// right and bottom edges average the pixels they have). dst holds
// ceil(w/k) x ceil(h/k) pixels, packed; acc holds 3*w unsigned ints. The
// k rows of a block are summed first (a contiguous loop the compiler
// vectorises), then each block's columns.
void xr_reduce_box(const unsigned char *src, long stride, int w, int h, int k,
                   unsigned char *dst, unsigned int *acc) {
	int ow = (w + k - 1) / k, oh = (h + k - 1) / k;
	for (int oy = 0; oy < oh; oy++) {
		int y0 = oy * k, y1 = y0 + k < h ? y0 + k : h;
		unsigned char *row = dst + (long)oy * ow * 3;
		if (k <= 257) { // 255 * k fits in 16 bits
			reduce_rows_ushort(src, stride, w, y0, y1, k, row, (unsigned short *)acc);
		} else {
			reduce_rows_uint(src, stride, w, y0, y1, k, row, acc);
		}
	}
}
