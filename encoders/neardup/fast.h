#ifndef XMODAL_NEARDUP_FAST_H
#define XMODAL_NEARDUP_FAST_H

#define ND_MAX_RAD 64

void nd_blur(int avx2, const float *src, int w, int h, const float *k, int rad, float *tmp, float *pad, float *dst);

long nd_scan(int avx2, const float *levels, int w, int h, int bd, float thr, float *dogs, int *out);

int nd_window(int avx2, const float *src, int w, int h, double cx, double cy, double half, double step,
	double ux, double uy, double vx, double vy, double sc, float *buf, int minq, const float *dct,
	const float *dt, float *coeffs, double *canon);

void nd_coeffs(int avx2, const float *g, const float *dct, const float *dt, float *out);

void nd_resample(int avx2, const float *src, int w, int h, int dw, int dh, const int *ystart, const int *yoff,
	const float *yw, const int *xstart, const int *xoff, const float *xw, int maxn, float *wv, int *iv,
	float *tmp, float *dst);

void nd_canon(const float *buf, double *out);

void nd_hash(int avx2, const float *c, int transpose, int neg_rows, int neg_cols, unsigned char *h);

void nd_luma_rgb(int avx2, const unsigned char *row, int n, float *dst);

void nd_luma_ycbcr(int avx2, const unsigned char *ys, const unsigned char *cb, const unsigned char *cr, int n,
	int paired, int odd, float *dst);

void nd_flat_lines(const float *p, int stride, int x0, int y0, int x1, int y1, int horiz, int *hist,
	unsigned char *flat);

void nd_clean(int avx2, float *p, int w, int h, int r, float lift, float *a, float *b, float *fwd, float *bwd);

#endif
