#ifndef XMODAL_JPEGTURBO_H
#define XMODAL_JPEGTURBO_H

#include <stdio.h>

#include <jpeglib.h>

// Failure codes beyond libjpeg's own message codes (J_MESSAGE_CODE).
#define XJ_CANCELLED 10001
#define XJ_TOO_MANY_SCANS 10002

// Output colour spaces of xj_start.
#define XJ_OUT_RGB 0
#define XJ_OUT_CMYK 1

typedef struct xj_dec xj_dec;

typedef struct {
	int width, height;
	int components;
	int color_space; // J_COLOR_SPACE of the file
	int progressive, multiscan;
	int max_h, max_v;
	int samp_h[4], samp_v[4]; // sampling factors of the first four components
	long blocks; // DCT blocks of all components, padded to iMCUs
} xj_info;

xj_dec *xj_new(void);
volatile int *xj_cancel_flag(xj_dec *x);
const char *xj_message(xj_dec *x);
int xj_eof_warning(xj_dec *x);
int xj_header(xj_dec *x, const unsigned char *buf, unsigned long len, int max_scans, xj_info *info);
int xj_start(xj_dec *x, int denom, int space, long max_mem, int *ow, int *oh);
int xj_read(xj_dec *x, unsigned char *dst, int stride, int rows, int *got);
void xj_free(xj_dec *x);

// xj_encode_rgb encodes a w x h packed RGB image (rows stride bytes apart)
// as a baseline JPEG into *out (*outlen bytes, freed with xj_free_buf). On
// failure it returns a non-zero code and the message in msg.
int xj_encode_rgb(const unsigned char *pix, int w, int h, int stride, int quality,
                  unsigned char **out, unsigned long *outlen, char *msg, int msglen);
void xj_free_buf(unsigned char *p);

#endif
