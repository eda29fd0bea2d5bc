// JPEG decoding through libjpeg-turbo's libjpeg API (see jpegturbo.go).
// Errors inside libjpeg longjmp back to the entry point that called it; the
// Go side never sees a longjmp. The encoded bytes are owned (and pinned) by
// the Go caller for the life of a decoder.

#include "jpegturbo.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>

struct xj_dec {
	struct jpeg_decompress_struct d;
	struct jpeg_error_mgr err;
	struct jpeg_progress_mgr progress;
	jmp_buf jb;
	int created;
	int started;
	int code;          // libjpeg message code of the failure, or an XJ_* code
	int eof_warning;   // libjpeg reported the data ended early
	int warnings;
	int max_scans;     // 0: no limit
	volatile int cancel; // set by Go when the context ends
	char msg[JMSG_LENGTH_MAX];
};

static void xj_error_exit(j_common_ptr c) {
	xj_dec *x = (xj_dec *)c->client_data;
	x->code = c->err->msg_code;
	(*c->err->format_message)(c, x->msg);
	longjmp(x->jb, 1);
}

static void xj_emit_message(j_common_ptr c, int level) {
	xj_dec *x = (xj_dec *)c->client_data;
	if (level >= 0) {
		return; // trace messages
	}
	x->warnings++;
	if (c->err->msg_code == JWRN_JPEG_EOF) {
		x->eof_warning = 1;
	}
	if (x->warnings == 1) {
		(*c->err->format_message)(c, x->msg);
	}
}

static void xj_output_message(j_common_ptr c) { (void)c; }

static void xj_progress(j_common_ptr c) {
	xj_dec *x = (xj_dec *)c->client_data;
	if (x->cancel) {
		x->code = XJ_CANCELLED;
		strcpy(x->msg, "decoding cancelled");
		longjmp(x->jb, 1);
	}
	if (x->max_scans > 0 && x->d.input_scan_number > x->max_scans) {
		x->code = XJ_TOO_MANY_SCANS;
		strcpy(x->msg, "too many scans");
		longjmp(x->jb, 1);
	}
}

xj_dec *xj_new(void) {
	xj_dec *x = calloc(1, sizeof(xj_dec));
	return x;
}

volatile int *xj_cancel_flag(xj_dec *x) { return &x->cancel; }
const char *xj_message(xj_dec *x) { return x->msg; }
int xj_eof_warning(xj_dec *x) { return x->eof_warning; }

int xj_header(xj_dec *x, const unsigned char *buf, unsigned long len, int max_scans, xj_info *info) {
	x->max_scans = max_scans;
	if (setjmp(x->jb)) {
		return x->code ? x->code : -1;
	}
	x->d.err = jpeg_std_error(&x->err);
	x->err.error_exit = xj_error_exit;
	x->err.emit_message = xj_emit_message;
	x->err.output_message = xj_output_message;
	x->d.client_data = x;
	jpeg_create_decompress(&x->d);
	x->created = 1;
	x->progress.progress_monitor = xj_progress;
	x->d.progress = &x->progress;
	jpeg_mem_src(&x->d, buf, len);
	jpeg_read_header(&x->d, TRUE);
	info->width = (int)x->d.image_width;
	info->height = (int)x->d.image_height;
	info->components = x->d.num_components;
	info->color_space = (int)x->d.jpeg_color_space;
	info->progressive = x->d.progressive_mode;
	info->multiscan = jpeg_has_multiple_scans(&x->d);
	info->max_h = x->d.max_h_samp_factor;
	info->max_v = x->d.max_v_samp_factor;
	info->blocks = 0;
	for (int i = 0; i < 4; i++) {
		info->samp_h[i] = i < x->d.num_components ? x->d.comp_info[i].h_samp_factor : 0;
		info->samp_v[i] = i < x->d.num_components ? x->d.comp_info[i].v_samp_factor : 0;
	}
	for (int i = 0; i < x->d.num_components; i++) {
		jpeg_component_info *c = &x->d.comp_info[i];
		long bw = ((long)x->d.image_width * c->h_samp_factor + 8L * x->d.max_h_samp_factor - 1) / (8L * x->d.max_h_samp_factor);
		long bh = ((long)x->d.image_height * c->v_samp_factor + 8L * x->d.max_v_samp_factor - 1) / (8L * x->d.max_v_samp_factor);
		// padded to whole iMCUs, as the coefficient buffer is
		bw = (bw + c->h_samp_factor - 1) / c->h_samp_factor * c->h_samp_factor;
		bh = (bh + c->v_samp_factor - 1) / c->v_samp_factor * c->v_samp_factor;
		info->blocks += bw * bh;
	}
	return 0;
}

int xj_start(xj_dec *x, int denom, int space, long max_mem, int *ow, int *oh) {
	if (setjmp(x->jb)) {
		return x->code ? x->code : -1;
	}
	x->d.mem->max_memory_to_use = max_mem;
	x->d.scale_num = 1;
	x->d.scale_denom = (unsigned int)denom;
	x->d.out_color_space = space == XJ_OUT_CMYK ? JCS_CMYK : JCS_RGB;
	x->d.dct_method = JDCT_ISLOW;
	x->d.do_fancy_upsampling = TRUE;
	jpeg_start_decompress(&x->d);
	x->started = 1;
	*ow = (int)x->d.output_width;
	*oh = (int)x->d.output_height;
	return 0;
}

int xj_read(xj_dec *x, unsigned char *dst, int stride, int rows, int *got) {
	JSAMPROW ptrs[16];
	*got = 0;
	if (rows > 16) {
		rows = 16;
	}
	if (setjmp(x->jb)) {
		return x->code ? x->code : -1;
	}
	int n = 0;
	while (n < rows && x->d.output_scanline < x->d.output_height) {
		int k = 0;
		for (int i = n; i < rows; i++) {
			ptrs[k++] = dst + (long)i * stride;
		}
		JDIMENSION got = jpeg_read_scanlines(&x->d, ptrs, (JDIMENSION)k);
		if (got == 0) {
			break; // suspension cannot happen with a memory source; do not spin
		}
		n += (int)got;
	}
	*got = n;
	return 0;
}

void xj_free(xj_dec *x) {
	if (x == NULL) {
		return;
	}
	if (x->created) {
		// jpeg_destroy never calls error_exit.
		jpeg_destroy_decompress(&x->d);
	}
	free(x);
}

// ---- encoding (thumbnails) ----

struct xj_enc {
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr err;
	jmp_buf jb;
	int code;
	char msg[JMSG_LENGTH_MAX];
};

static void xj_enc_error_exit(j_common_ptr c) {
	struct xj_enc *x = (struct xj_enc *)c->client_data;
	x->code = c->err->msg_code;
	(*c->err->format_message)(c, x->msg);
	longjmp(x->jb, 1);
}

int xj_encode_rgb(const unsigned char *pix, int w, int h, int stride, int quality,
                  unsigned char **out, unsigned long *outlen, char *msg, int msglen) {
	struct xj_enc *x = calloc(1, sizeof(struct xj_enc));
	if (x == NULL) {
		strncpy(msg, "out of memory", msglen - 1);
		return -1;
	}
	*out = NULL;
	*outlen = 0;
	if (setjmp(x->jb)) {
		int code = x->code ? x->code : -1;
		strncpy(msg, x->msg, msglen - 1);
		jpeg_destroy_compress(&x->c);
		free(*out);
		*out = NULL;
		free(x);
		return code;
	}
	x->c.err = jpeg_std_error(&x->err);
	x->err.error_exit = xj_enc_error_exit;
	x->err.output_message = xj_output_message;
	x->c.client_data = x;
	jpeg_create_compress(&x->c);
	jpeg_mem_dest(&x->c, out, outlen);
	x->c.image_width = (JDIMENSION)w;
	x->c.image_height = (JDIMENSION)h;
	x->c.input_components = 3;
	x->c.in_color_space = JCS_RGB;
	jpeg_set_defaults(&x->c); // YCbCr 4:2:0, baseline
	jpeg_set_quality(&x->c, quality, TRUE);
	jpeg_start_compress(&x->c, TRUE);
	while (x->c.next_scanline < x->c.image_height) {
		JSAMPROW row = (JSAMPROW)(pix + (long)x->c.next_scanline * stride);
		jpeg_write_scanlines(&x->c, &row, 1);
	}
	jpeg_finish_compress(&x->c);
	jpeg_destroy_compress(&x->c);
	free(x);
	return 0;
}

void xj_free_buf(unsigned char *p) { free(p); }
