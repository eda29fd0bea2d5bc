#ifndef XMODAL_PDQ_DOWNSAMPLE_H
#define XMODAL_PDQ_DOWNSAMPLE_H

int xp_downsample_rgb(const unsigned char *pix, long stride, int w, int h, const double *luma_table, float *plane);

void xp_grid_rows(const unsigned char *pix, long stride, int w, int h, const double *luma_table, const int *first,
                  const int *woff, const double *wts, float *luma, double *acc);

void xp_dct64to16(const float *a, const float *d, const float *dt, float *b);

#endif
