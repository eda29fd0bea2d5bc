#ifndef XMODAL_RESAMPLE_H
#define XMODAL_RESAMPLE_H

// Fixed-point bits of the resampling weights (Pillow's PRECISION_BITS).
#define XR_PRECISION (32 - 8 - 2)

void xr_hpass(const unsigned char *src, long stride, int w, int rows, unsigned char *dst, int cw,
              const int *first, const int *count, const int *weight, int ksize);
void xr_vpass(const unsigned char *tmp, int stride, unsigned char *dst, int ch,
              const int *first, const int *count, const int *weight, int ksize, int *acc);
void xr_reduce_box(const unsigned char *src, long stride, int w, int h, int k,
                   unsigned char *dst, unsigned int *acc);

#endif
