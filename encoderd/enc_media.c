/* enc_media — see enc_media.h. */
#include "enc_media.h"

#include <math.h>
#include <mpg123.h>
#include <stdlib.h>
#include <string.h>

#define STBI_NO_STDIO
#include <stb/stb_image.h>

/* ---- images ---------------------------------------------------------------- */

static long long s_max_pixels = ENC_MAX_IMAGE_PIXELS;
static int s_max_audio_s = ENC_MAX_AUDIO_SECONDS;

void enc_media_set_limits(long long max_pixels, int max_audio_s)
{
    if (max_pixels > 0) s_max_pixels = max_pixels;
    if (max_audio_s > 0) s_max_audio_s = max_audio_s;
}

int enc_image_decode(const uint8_t *data, size_t len, uint8_t **rgb, int *w, int *h, g4_err_t *err)
{
    int x = 0, y = 0, c = 0;
    *rgb = NULL;
    if (!data || len == 0) return g4_err_set(err, G4_ERR_FORMAT, "empty image");
    if (len > (size_t)INT32_MAX) return g4_err_set(err, G4_ERR_RANGE, "image file too large");
    if (!stbi_info_from_memory(data, (int)len, &x, &y, &c))
        return g4_err_set(err, G4_ERR_FORMAT, "not an image g4 can decode (%s)", stbi_failure_reason());
    if (x <= 0 || y <= 0) return g4_err_set(err, G4_ERR_FORMAT, "image has no pixels");
    if ((long long)x * y > s_max_pixels)
        return g4_err_set(err, G4_ERR_RANGE, "image %dx%d is larger than %lld pixels (encoderd --max-image-pixels)", x, y,
                          s_max_pixels);
    uint8_t *p = stbi_load_from_memory(data, (int)len, &x, &y, &c, 3);
    if (!p) return g4_err_set(err, G4_ERR_FORMAT, "cannot decode image (%s)", stbi_failure_reason());
    *rgb = p;
    *w = x;
    *h = y;
    return G4_OK;
}

void enc_image_free(uint8_t *rgb) { stbi_image_free(rgb); }

void enc_image_target(int w, int h, int align, int min_tokens, int max_tokens, int *tw, int *th)
{
    const long long min_px = (long long)min_tokens * align * align, max_px = (long long)max_tokens * align * align;
    const float f = (float)align;
#define ROUND_BY(x) ((int)roundf((x) / f) * align)
#define CEIL_BY(x) ((int)ceilf((x) / f) * align)
#define FLOOR_BY(x) ((int)floorf((x) / f) * align)
    int wb = ROUND_BY((float)w), hb = ROUND_BY((float)h);
    if (wb < align) wb = align;
    if (hb < align) hb = align;
    if (max_px > 0 && (long long)hb * wb > max_px) {
        const float beta = sqrtf((float)h * (float)w / (float)max_px);
        hb = FLOOR_BY((float)h / beta);
        wb = FLOOR_BY((float)w / beta);
        if (hb < align) hb = align;
        if (wb < align) wb = align;
    } else if (min_px > 0 && (long long)hb * wb < min_px) {
        const float beta = sqrtf((float)min_px / ((float)h * (float)w));
        hb = CEIL_BY((float)h * beta);
        wb = CEIL_BY((float)w * beta);
    }
#undef ROUND_BY
#undef CEIL_BY
#undef FLOOR_BY
    *tw = wb;
    *th = hb;
}

/* Pillow's separable resampling: bicubic (a = -0.5), support widened by the
 * downscale factor, 22-bit fixed-point weights, horizontal then vertical. */
#define PREC_BITS 22

static double s_bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static int s_weights(int in_size, int out_size, int **bounds, int32_t **weights)
{
    double scale = (double)in_size / out_size, fs = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * fs;
    const int ksize = (int)ceil(support) * 2 + 1;
    double *pre = malloc(sizeof(double) * (size_t)ksize);
    int *b = malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *k = malloc(sizeof(int32_t) * (size_t)out_size * ksize);
    if (!pre || !b || !k) {
        free(pre);
        free(b);
        free(k);
        return -1;
    }
    const double fxp = ldexp(1.0, PREC_BITS);
    for (int xx = 0; xx < out_size; xx++) {
        const double center = (xx + 0.5) * scale, ss = 1.0 / fs;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5), x;
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            const double wv = s_bicubic((x + xmin - center + 0.5) * ss);
            pre[x] = wv;
            ww += wv;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) pre[x] /= ww;
        for (; x < ksize; x++) pre[x] = 0;
        for (x = 0; x < ksize; x++) k[(size_t)xx * ksize + x] = (int32_t)(pre[x] * fxp + (pre[x] < 0 ? -0.5 : 0.5));
        b[2 * xx] = xmin;
        b[2 * xx + 1] = xmax;
    }
    free(pre);
    *bounds = b;
    *weights = k;
    return ksize;
}

static uint8_t s_clip8(int32_t v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

int enc_image_resize(const uint8_t *rgb, int w, int h, int tw, int th, uint8_t **out, g4_err_t *err)
{
    *out = NULL;
    if (tw <= 0 || th <= 0 || tw > 65536 || th > 65536)
        return g4_err_set(err, G4_ERR_RANGE, "resize target %dx%d is out of range", tw, th);
    const uint8_t *src = rgb;
    uint8_t *tmp = NULL;
    int cw = w;
    if (tw != w) {
        int *b;
        int32_t *k;
        const int ks = s_weights(w, tw, &b, &k);
        tmp = ks < 0 ? NULL : malloc((size_t)tw * h * 3);
        if (!tmp) {
            if (ks >= 0) {
                free(b);
                free(k);
            }
            return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        }
#pragma omp parallel for if ((long long)tw * h > 65536)
        for (int yy = 0; yy < h; yy++) {
            const uint8_t *row = rgb + (size_t)yy * w * 3;
            uint8_t *dr = tmp + (size_t)yy * tw * 3;
            for (int xx = 0; xx < tw; xx++) {
                const int xmin = b[2 * xx], xcnt = b[2 * xx + 1];
                const int32_t *kk = k + (size_t)xx * ks;
                const uint8_t *p = row + (size_t)xmin * 3;
                int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < xcnt; x++, p += 3) {
                    s0 += p[0] * kk[x];
                    s1 += p[1] * kk[x];
                    s2 += p[2] * kk[x];
                }
                dr[xx * 3 + 0] = s_clip8(s0 >> PREC_BITS);
                dr[xx * 3 + 1] = s_clip8(s1 >> PREC_BITS);
                dr[xx * 3 + 2] = s_clip8(s2 >> PREC_BITS);
            }
        }
        free(b);
        free(k);
        src = tmp;
        cw = tw;
    }
    uint8_t *dst = malloc((size_t)tw * th * 3);
    if (!dst) {
        free(tmp);
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    }
    if (th != h) {
        int *b;
        int32_t *k;
        const int ks = s_weights(h, th, &b, &k);
        if (ks < 0) {
            free(tmp);
            free(dst);
            return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        }
        const size_t re = (size_t)cw * 3;
#pragma omp parallel for if ((long long)tw * th > 65536)
        for (int yy = 0; yy < th; yy++) {
            const int ymin = b[2 * yy], ycnt = b[2 * yy + 1];
            const int32_t *kk = k + (size_t)yy * ks;
            uint8_t *dr = dst + (size_t)yy * re;
            for (size_t i = 0; i < re; i++) {
                int32_t acc = 1 << (PREC_BITS - 1);
                for (int y = 0; y < ycnt; y++) acc += src[(size_t)(ymin + y) * re + i] * kk[y];
                dr[i] = s_clip8(acc >> PREC_BITS);
            }
        }
        free(b);
        free(k);
    } else {
        memcpy(dst, src, (size_t)tw * th * 3);
    }
    free(tmp);
    *out = dst;
    return G4_OK;
}

int enc_image_letterbox(const uint8_t *rgb, int w, int h, int tw, int th, uint8_t **out, g4_err_t *err)
{
    *out = NULL;
    if (tw == w && th == h) {
        uint8_t *c = malloc((size_t)w * h * 3);
        if (!c) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        memcpy(c, rgb, (size_t)w * h * 3);
        *out = c;
        return G4_OK;
    }
    const float sw = (float)tw / (float)w, sh = (float)th / (float)h, s = sw < sh ? sw : sh;
    int nw = (int)ceilf((float)w * s), nh = (int)ceilf((float)h * s);
    if (nw > tw) nw = tw;
    if (nh > th) nh = th;
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;
    uint8_t *r;
    int rc = enc_image_resize(rgb, w, h, nw, nh, &r, err);
    if (rc) return rc;
    uint8_t *d = calloc((size_t)tw * th, 3);
    if (!d) {
        free(r);
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    }
    const int ox = (tw - nw) / 2, oy = (th - nh) / 2;
    for (int y = 0; y < nh; y++) memcpy(d + ((size_t)(y + oy) * tw + ox) * 3, r + (size_t)y * nw * 3, (size_t)nw * 3);
    free(r);
    *out = d;
    return G4_OK;
}

/* ---- audio: decoding ----------------------------------------------------------- */

static uint32_t s_le32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t s_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* interleaved frames -> mono by averaging the channels */
static void s_mix(const float *in, size_t frames, int ch, float *out)
{
    if (ch == 1) {
        memcpy(out, in, frames * 4);
        return;
    }
    for (size_t i = 0; i < frames; i++) {
        if (ch == 2) {
            out[i] = (in[2 * i] + in[2 * i + 1]) * 0.5f;
        } else {
            float s = 0.0f;
            for (int c = 0; c < ch; c++) s += in[i * ch + c];
            out[i] = s / (float)ch;
        }
    }
}

static int s_wav(const uint8_t *d, size_t len, float **mono, size_t *frames, uint32_t *rate, g4_err_t *err)
{
    if (len < 12 || memcmp(d, "RIFF", 4) || memcmp(d + 8, "WAVE", 4))
        return g4_err_set(err, G4_ERR_FORMAT, "not a RIFF/WAVE file");
    size_t off = 12;
    int have_fmt = 0;
    uint16_t fmt = 0, ch = 0, bits = 0;
    uint32_t sr = 0;
    while (off + 8 <= len) {
        const uint32_t csz = s_le32(d + off + 4);
        const uint8_t *c = d + off + 8;
        const size_t avail = len - off - 8;
        if (!memcmp(d + off, "fmt ", 4)) {
            if (csz < 16 || avail < 16) return g4_err_set(err, G4_ERR_FORMAT, "WAV fmt chunk too short");
            fmt = s_le16(c);
            ch = s_le16(c + 2);
            sr = s_le32(c + 4);
            bits = s_le16(c + 14);
            if (fmt == 0xFFFE && csz >= 40 && avail >= 40) fmt = s_le16(c + 24);
            have_fmt = 1;
        } else if (!memcmp(d + off, "data", 4)) {
            if (!have_fmt) return g4_err_set(err, G4_ERR_FORMAT, "WAV data before fmt");
            if (ch == 0 || ch > 64 || sr < ENC_MIN_AUDIO_RATE || sr > ENC_MAX_AUDIO_RATE)
                return g4_err_set(err, G4_ERR_RANGE, "WAV with %u channels at %u Hz: %d to %d Hz and 1 to 64 channels are taken",
                                  ch, sr, ENC_MIN_AUDIO_RATE, ENC_MAX_AUDIO_RATE);
            const int bps = bits / 8;
            if (!((fmt == 1 && (bits == 8 || bits == 16 || bits == 24 || bits == 32)) ||
                  (fmt == 3 && (bits == 32 || bits == 64))))
                return g4_err_set(err, G4_ERR_FORMAT, "WAV format %u with %u bits is not supported", fmt, bits);
            size_t n = (csz < avail ? csz : avail) / ((size_t)bps * ch);
            if (n > (size_t)sr * (size_t)s_max_audio_s)
                return g4_err_set(err, G4_ERR_RANGE, "audio longer than %d s (encoderd --max-audio-seconds)", s_max_audio_s);
            if (n == 0) return g4_err_set(err, G4_ERR_FORMAT, "WAV has no samples");
            float *inter = malloc(n * ch * 4), *m = malloc(n * 4);
            if (!inter || !m) {
                free(inter);
                free(m);
                return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
            }
            for (size_t i = 0; i < n * ch; i++) {
                const uint8_t *p = c + i * bps;
                float v;
                if (fmt == 3) {
                    if (bits == 32) {
                        uint32_t u = s_le32(p);
                        memcpy(&v, &u, 4);
                    } else {
                        uint64_t u = (uint64_t)s_le32(p) | (uint64_t)s_le32(p + 4) << 32;
                        double dv;
                        memcpy(&dv, &u, 8);
                        v = (float)dv;
                    }
                } else if (bits == 8) {
                    v = (float)p[0] * 0.00784313725490196078f - 1.0f; /* as miniaudio */
                } else if (bits == 16) {
                    v = (int16_t)s_le16(p) * (1.0f / 32768.0f);
                } else if (bits == 24) {
                    int32_t s = (int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 24) >> 8;
                    v = (float)s * (1.0f / 8388608.0f);
                } else {
                    v = (float)((double)(int32_t)s_le32(p) / 2147483648.0);
                }
                inter[i] = isfinite(v) ? v : 0.0f;
            }
            s_mix(inter, n, ch, m);
            free(inter);
            *mono = m;
            *frames = n;
            *rate = sr;
            return G4_OK;
        }
        const size_t step = 8 + (size_t)csz + (csz & 1);
        if (step > len - off) break;
        off += step;
    }
    return g4_err_set(err, G4_ERR_FORMAT, "WAV file has no data chunk");
}

static int s_mp3(const uint8_t *d, size_t len, float **mono, size_t *frames, uint32_t *rate, g4_err_t *err)
{
    int e = 0;
    mpg123_handle *mh = mpg123_new(NULL, &e);
    if (!mh) return g4_err_set(err, G4_ERR_NOMEM, "mpg123: %s", mpg123_plain_strerror(e));
    mpg123_param(mh, MPG123_ADD_FLAGS, MPG123_FORCE_FLOAT | MPG123_QUIET, 0.0);
    mpg123_format_none(mh);
    const long *rates;
    size_t nr;
    mpg123_rates(&rates, &nr);
    for (size_t i = 0; i < nr; i++) mpg123_format(mh, rates[i], MPG123_MONO | MPG123_STEREO, MPG123_ENC_FLOAT_32);
    int rc = G4_OK;
    float *buf = NULL;
    size_t nbuf = 0, cap = 0;
    long r = 0;
    int ch = 0, enc = 0;
    if (mpg123_open_feed(mh) != MPG123_OK || mpg123_feed(mh, d, len) != MPG123_OK) {
        rc = g4_err_set(err, G4_ERR_FORMAT, "mpg123: %s", mpg123_strerror(mh));
        goto out;
    }
    uint8_t tmp[16384];
    for (;;) {
        size_t got = 0;
        int s = mpg123_read(mh, tmp, sizeof tmp, &got);
        if (s == MPG123_NEW_FORMAT) {
            long nrate;
            int nch;
            mpg123_getformat(mh, &nrate, &nch, &enc);
            if ((ch && (nch != ch || nrate != r)) || nch < 1 || nch > 2) {
                rc = g4_err_set(err, G4_ERR_FORMAT, "MP3 changes its format mid-stream");
                goto out;
            }
            r = nrate;
            ch = nch;
        }
        if (got) {
            const size_t nf = got / 4;
            if (nbuf + nf > cap) {
                size_t nc = cap ? cap * 2 : 1 << 16;
                while (nc < nbuf + nf) nc *= 2;
                float *nb = realloc(buf, nc * 4);
                if (!nb) {
                    rc = g4_err_set(err, G4_ERR_NOMEM, "out of memory");
                    goto out;
                }
                buf = nb;
                cap = nc;
            }
            memcpy(buf + nbuf, tmp, nf * 4);
            nbuf += nf;
            if (r > 0 && nbuf / (size_t)(ch ? ch : 1) > (size_t)r * (size_t)s_max_audio_s) {
                rc = g4_err_set(err, G4_ERR_RANGE, "audio longer than %d s (encoderd --max-audio-seconds)", s_max_audio_s);
                goto out;
            }
        }
        if (s == MPG123_NEED_MORE || s == MPG123_DONE) break;
        if (s != MPG123_OK && s != MPG123_NEW_FORMAT) {
            if (nbuf) break; /* keep what decoded before a broken tail */
            rc = g4_err_set(err, G4_ERR_FORMAT, "mpg123: %s", mpg123_strerror(mh));
            goto out;
        }
    }
    if (!ch || nbuf < (size_t)ch) {
        rc = g4_err_set(err, G4_ERR_FORMAT, "no MP3 audio frames found");
        goto out;
    }
    {
        const size_t n = nbuf / (size_t)ch;
        float *m = malloc(n * 4);
        if (!m) {
            rc = g4_err_set(err, G4_ERR_NOMEM, "out of memory");
            goto out;
        }
        s_mix(buf, n, ch, m);
        *mono = m;
        *frames = n;
        *rate = (uint32_t)r;
    }
out:
    free(buf);
    mpg123_delete(mh);
    return rc;
}

static uint32_t s_gcd(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

typedef struct biquad {
    float b0, b1, b2, a1, a2, r1, r2;
} biquad_t;

static void s_lpf2(biquad_t *bq, double rate, double cutoff, double q)
{
    const double w = 2 * 3.14159265358979323846264 * cutoff / rate, s = sin(w),
                 c = sin(3.14159265358979323846264 * 0.5 - w), a = s / (2 * q);
    const double b0 = (1 - c) / 2, b1 = 1 - c, b2 = (1 - c) / 2, a0 = 1 + a, a1 = -2 * c, a2 = 1 - a;
    bq->b0 = (float)(b0 / a0);
    bq->b1 = (float)(b1 / a0);
    bq->b2 = (float)(b2 / a0);
    bq->a1 = (float)(a1 / a0);
    bq->a2 = (float)(a2 / a0);
    bq->r1 = bq->r2 = 0.0f;
}

static float s_biquad(biquad_t *bq, float x)
{
    const float y = bq->b0 * x + bq->r1;
    const float r1 = bq->b1 * x - bq->a1 * y + bq->r2;
    const float r2 = bq->b2 * x - bq->a2 * y;
    bq->r1 = r1;
    bq->r2 = r2;
    return y;
}

int enc_audio_resample(const float *in, size_t n_in, uint32_t rate_in, uint32_t rate_out, float **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (rate_in == rate_out) {
        float *o = malloc((n_in ? n_in : 1) * 4);
        if (!o) return G4_ERR_NOMEM;
        memcpy(o, in, n_in * 4);
        *out = o;
        *n_out = n_in;
        return G4_OK;
    }
    const uint32_t g = s_gcd(rate_in, rate_out), ri = rate_in / g, ro = rate_out / g;
    /* 4th-order Butterworth low-pass at half the lower rate: two biquads */
    biquad_t lp[2];
    const double lrate = ri > ro ? ri : ro, cut = (ri < ro ? ri : ro) * 0.5;
    for (int i = 0; i < 2; i++) {
        const double a = (1 + i * 2) * (3.14159265358979323846264 / (4 * 2));
        s_lpf2(&lp[i], lrate, cut, 1 / (2 * sin(3.14159265358979323846264 * 0.5 - a)));
    }
    /* as many frames as miniaudio's decoder reports for the resampled length */
    size_t cap = (size_t)(((uint64_t)n_in * rate_out) / rate_in);
    {
        const uint64_t frac = ((uint64_t)cap * (rate_in / rate_out)) / rate_out;
        if ((uint64_t)cap * (rate_in % rate_out) + frac <= n_in) cap++;
    }
    if (cap == 0) cap = 1;
    float *o = malloc(cap * 4);
    if (!o) return G4_ERR_NOMEM;
    const uint32_t adv_int = ri / ro, adv_frac = ri % ro;
    uint64_t t_int = 1, t_frac = 0;
    float x0 = 0.0f, x1 = 0.0f;
    size_t pi = 0, po = 0;
    const int down = ri > ro;
    for (;;) {
        while (t_int > 0 && pi < n_in) {
            x0 = x1;
            x1 = in[pi++];
            if (down) x1 = s_biquad(&lp[1], s_biquad(&lp[0], x1));
            t_int--;
        }
        if (t_int > 0) break;
        const float a = (float)t_frac / (float)ro;
        float s = x0 + (x1 - x0) * a;
        if (!down) s = s_biquad(&lp[1], s_biquad(&lp[0], s));
        if (po == cap) break;
        o[po++] = s;
        t_int += adv_int;
        t_frac += adv_frac;
        if (t_frac >= ro) {
            t_frac -= ro;
            t_int++;
        }
    }
    *out = o;
    *n_out = po;
    return G4_OK;
}

int enc_audio_decode(const uint8_t *data, size_t len, float **pcm, size_t *n, g4_err_t *err)
{
    float *mono = NULL;
    size_t frames = 0;
    uint32_t rate = 0;
    int rc;
    *pcm = NULL;
    *n = 0;
    if (!data || len == 0) return g4_err_set(err, G4_ERR_FORMAT, "empty audio");
    if (len >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WAVE", 4)) rc = s_wav(data, len, &mono, &frames, &rate, err);
    else rc = s_mp3(data, len, &mono, &frames, &rate, err);
    if (rc) return rc;
    if (rate < ENC_MIN_AUDIO_RATE || rate > ENC_MAX_AUDIO_RATE || frames > (size_t)rate * (size_t)s_max_audio_s) {
        free(mono);
        return g4_err_set(err, G4_ERR_RANGE, "audio of %zu samples at %u Hz: %d to %d Hz, at most %d s", frames, rate,
                          ENC_MIN_AUDIO_RATE, ENC_MAX_AUDIO_RATE, s_max_audio_s);
    }
    rc = enc_audio_resample(mono, frames, rate, ENC_AUDIO_RATE, pcm, n);
    free(mono);
    if (rc) return g4_err_set(err, rc, "out of memory");
    if (*n == 0) {
        free(*pcm);
        *pcm = NULL;
        return g4_err_set(err, G4_ERR_FORMAT, "audio has no samples");
    }
    return G4_OK;
}

/* ---- audio: log-mel ------------------------------------------------------------- */

#define NFFT 512
#define HOP 160
#define WIN 320

typedef struct melcache {
    float sinv[NFFT], cosv[NFFT], hann[NFFT];
    float *filters; /* [n_mel][257] */
    int n_mel;
} melcache_t;

static void s_fft(const melcache_t *mc, float *in, int N, float *out)
{
    if (N == 1) {
        out[0] = in[0];
        out[1] = 0.0f;
        return;
    }
    const int half = N / 2;
    float *even = in + N;
    for (int i = 0; i < half; i++) even[i] = in[2 * i];
    float *even_fft = out + 2 * N;
    s_fft(mc, even, half, even_fft);
    float *odd = even;
    for (int i = 0; i < half; i++) odd[i] = in[2 * i + 1];
    float *odd_fft = even_fft + N;
    s_fft(mc, odd, half, odd_fft);
    const int step = NFFT / N;
    for (int k = 0; k < half; k++) {
        const float re = mc->cosv[k * step], im = -mc->sinv[k * step];
        const float ro = odd_fft[2 * k], io = odd_fft[2 * k + 1];
        out[2 * k] = even_fft[2 * k] + re * ro - im * io;
        out[2 * k + 1] = even_fft[2 * k + 1] + re * io + im * ro;
        out[2 * (k + half)] = even_fft[2 * k] - re * ro + im * io;
        out[2 * (k + half) + 1] = even_fft[2 * k + 1] - re * io - im * ro;
    }
}

static int s_melcache(melcache_t *mc, int n_mel)
{
    for (int i = 0; i < NFFT; i++) {
        const double th = (2 * M_PI * i) / NFFT;
        mc->sinv[i] = sinf((float)th);
        mc->cosv[i] = cosf((float)th);
        mc->hann[i] = 0.0f;
    }
    for (int i = 0; i < WIN; i++) mc->hann[i] = 0.5f - 0.5f * cosf((2.0f * (float)M_PI * (float)i) / WIN);
    const int nb = NFFT / 2 + 1;
    mc->n_mel = n_mel;
    mc->filters = calloc((size_t)n_mel * nb, 4);
    double *pts = malloc(sizeof(double) * (size_t)(n_mel + 2));
    if (!mc->filters || !pts) {
        free(pts);
        free(mc->filters);
        return G4_ERR_NOMEM;
    }
    const double m_lo = 2595.0 * log10(1.0 + 0.0 / 700.0), m_hi = 2595.0 * log10(1.0 + 8000.0 / 700.0);
    for (int i = 0; i < n_mel + 2; i++) {
        const double mm = m_lo + (m_hi - m_lo) * ((double)i / (n_mel + 1));
        pts[i] = 700.0 * (pow(10.0, mm / 2595.0) - 1.0);
    }
    const double bin = (double)ENC_AUDIO_RATE / NFFT;
    for (int m = 0; m < n_mel; m++) {
        const double fl = pts[m], fc = pts[m + 1], fr = pts[m + 2];
        const double dl = fmax(1e-30, fc - fl), dr = fmax(1e-30, fr - fc);
        for (int k = 0; k < nb; k++) {
            const double f = k * bin;
            double w = 0.0;
            if (f >= fl && f <= fc) w = (f - fl) / dl;
            else if (f > fc && f <= fr) w = (fr - f) / dr;
            mc->filters[(size_t)m * nb + k] = (float)w;
        }
    }
    free(pts);
    return G4_OK;
}

int enc_audio_mel(const float *pcm, size_t n, int n_mel, float **mel, int *n_frames, g4_err_t *err)
{
    *mel = NULL;
    *n_frames = 0;
    if (n == 0 || n > ENC_AUDIO_CHUNK) return g4_err_set(err, G4_ERR_RANGE, "audio chunk of %zu samples", n);
    if (n_mel < 1 || n_mel > 1024) return g4_err_set(err, G4_ERR_RANGE, "%d mel bins", n_mel);
    melcache_t mc;
    if (s_melcache(&mc, n_mel)) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    /* semicausal left pad of half a window, right pad so every frame exists */
    const int pad_left = WIN / 2, len = (int)n;
    const int64_t pt_frames = (int64_t)(len + pad_left - (WIN + 1)) / HOP + 1;
    const int64_t needed = (pt_frames - 1) * HOP + NFFT;
    const int total_pad = needed - len > pad_left ? (int)(needed - len) : pad_left;
    const int ns = total_pad + len;
    float *pad = calloc((size_t)ns, 4);
    const int64_t n_len_full = (int64_t)(ns - NFFT) / HOP + 1;
    const int64_t n_len = n_len_full < pt_frames ? n_len_full : pt_frames;
    float *out = n_len > 0 ? malloc((size_t)(n_len * n_mel) * 4) : NULL;
    if (!pad || !out) {
        free(pad);
        free(out);
        free(mc.filters);
        return g4_err_set(err, n_len > 0 ? G4_ERR_NOMEM : G4_ERR_RANGE, "audio chunk too short or out of memory");
    }
    memcpy(pad + pad_left, pcm, n * 4);
    const int nb = NFFT / 2 + 1;
    const int64_t n_compute = (int64_t)ns / HOP + 1 < n_len ? (int64_t)ns / HOP + 1 : n_len;
#pragma omp parallel
    {
        float fin[NFFT * 2], fout[NFFT * 8];
#pragma omp for
        for (int64_t i = 0; i < n_len; i++) {
            float *row = out + i * n_mel;
            if (i >= n_compute) {
                for (int j = 0; j < n_mel; j++) row[j] = (float)log(1e-10);
                continue;
            }
            const int64_t off = i * HOP;
            int valid = ns - (int)off;
            if (valid < 0) valid = 0;
            if (valid > NFFT) valid = NFFT;
            for (int j = 0; j < valid; j++) fin[j] = mc.hann[j] * pad[off + j];
            for (int j = valid; j < NFFT * 2; j++) fin[j] = 0.0f;
            s_fft(&mc, fin, NFFT, fout);
            for (int j = 0; j < nb; j++) {
                const float p = fout[2 * j] * fout[2 * j] + fout[2 * j + 1] * fout[2 * j + 1];
                fout[j] = sqrtf(p);
            }
            for (int j = 0; j < n_mel; j++) {
                const float *fl = mc.filters + (size_t)j * nb;
                double sum = 0.0;
                int k = 0;
                for (; k < nb - 3; k += 4)
                    sum += fout[k] * fl[k] + fout[k + 1] * fl[k + 1] + fout[k + 2] * fl[k + 2] + fout[k + 3] * fl[k + 3];
                for (; k < nb; k++) sum += fout[k] * fl[k];
                if (sum < 0.001f) sum = 0.001f;
                row[j] = (float)log(sum);
            }
        }
    }
    free(pad);
    free(mc.filters);
    *mel = out;
    *n_frames = (int)n_len;
    return G4_OK;
}
