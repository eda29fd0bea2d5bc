#ifndef XMODAL_PDQ_DOWNSAMPLE_H
#define XMODAL_PDQ_DOWNSAMPLE_H

int xp_downsample_rgb(const unsigned char *pix, long stride, int w, int h, const double *luma_table, float *plane);

void xp_dct64to16(const float *a, const float *d, const float *dt, float *b);

#endif
