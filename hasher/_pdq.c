/*
 * _pdq: PDQ hashes of 8-bit RGB pixels, bit for bit what pdqhash 0.2.8 computes,
 * in one pass over the pixels and with little memory traffic.
 *
 * PDQ (Meta, "pdqhash-2017-10-09.pdf") turns an image into luminance, blurs it with
 * a Jarosz filter (two rounds of a box filter along rows, then along columns, each
 * window about 1/128 of the dimension), samples 64x64 points, takes the 16x16
 * lowest non-constant frequencies of their 2D DCT-II, and sets each bit where that
 * coefficient exceeds the median. Quality counts the significant gradients of the
 * 64x64 samples.
 *
 * Bit-identical output means doing the same float operations in the same order as
 * pdqhash:
 *   - luminance is 0.299 R + 0.587 G + 0.114 B summed in double, then rounded to
 *     float (pdqhash computes it with numpy in float64);
 *   - a box filter is a running float sum: add the entering sample, then subtract
 *     the leaving one, and write sum / (samples in the window); near the ends the
 *     window is cut short;
 *   - the DCT sums products in float, in index order.
 * This file is compiled with -ffp-contract=off, so no multiply-add is fused.
 *
 * What is faster than pdqhash: luminance is computed row by row straight into the
 * first box filter; the column filter runs across a whole row of columns at once
 * (sequential memory, vectorised); and the second round computes only what the
 * 64x64 sampling reads (a running sum must still pass over every sample, but the
 * column filter of the second round runs on 64 columns only).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PDQ_MIN_DIM 5
#define PDQ_HASH_BYTES 32

static float dct_matrix[16][64];

static void init_dct_matrix(void) {
    const float scale = (float)sqrt(2.0 / 64.0);
    const double base = 3.14159265358979323846 / 2.0 / 64.0;
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 64; j++) {
            dct_matrix[i][j] =
                (float)((double)scale * cos(base * (double)(i + 1) * (double)(2 * j + 1)));
        }
    }
}

/* The Jarosz window for one dimension: about old / 128, rounded up. */
static int window_size(int old_dim) { return (old_dim + 2 * 64 - 1) / (2 * 64); }

/* A box filter along one contiguous vector of n samples. */
static void box_1d(const float *in, float *out, int n, int window) {
    int half = (window + 2) / 2;
    int ri = 0, li = 0, oi = 0, count = 0;
    float sum = 0.0f;
    for (int k = 0; k < half - 1; k++) {
        sum += in[ri++];
        count++;
    }
    for (int k = 0; k < window - half + 1; k++) {
        sum += in[ri++];
        count++;
        out[oi++] = sum / (float)count;
    }
    for (int k = 0; k < n - window; k++) {
        sum += in[ri++];
        sum -= in[li++];
        out[oi++] = sum / (float)count;
    }
    for (int k = 0; k < half - 1; k++) {
        sum -= in[li++];
        count--;
        out[oi++] = sum / (float)count;
    }
}

/*
 * box_1d on LANES rows at once: the same operations per row, interleaved, so that
 * the rows' running sums (each a chain of dependent additions) overlap in the CPU.
 */
#define LANES 4

static void box_1d_lanes(const float *const in[LANES], float *const out[LANES], int n,
                         int window) {
    int half = (window + 2) / 2;
    int ri = 0, li = 0, oi = 0, count = 0;
    float sum[LANES] = {0.0f};
    for (int k = 0; k < half - 1; k++, ri++) {
        for (int r = 0; r < LANES; r++) sum[r] += in[r][ri];
        count++;
    }
    for (int k = 0; k < window - half + 1; k++, ri++, oi++) {
        count++;
        float c = (float)count;
        for (int r = 0; r < LANES; r++) {
            sum[r] += in[r][ri];
            out[r][oi] = sum[r] / c;
        }
    }
    float c = (float)count;
    for (int k = 0; k < n - window; k++, ri++, li++, oi++) {
        for (int r = 0; r < LANES; r++) {
            float s = sum[r] + in[r][ri];
            s = s - in[r][li];
            sum[r] = s;
            out[r][oi] = s / c;
        }
    }
    for (int k = 0; k < half - 1; k++, li++, oi++) {
        count--;
        float cc = (float)count;
        for (int r = 0; r < LANES; r++) {
            sum[r] -= in[r][li];
            out[r][oi] = sum[r] / cc;
        }
    }
}

/*
 * A box filter down every column of a rows x cols matrix at once. Row by row, each
 * output row is passed to emit(); the arithmetic per column is exactly box_1d's.
 */
typedef void (*row_sink)(void *ctx, int row, const float *values, int cols);

static void box_columns(const float *in, int rows, int cols, int window, float *sums,
                        float *row_out, row_sink emit, void *ctx) {
    int half = (window + 2) / 2;
    int ri = 0, li = 0, oi = 0, count = 0;
    memset(sums, 0, sizeof(float) * (size_t)cols);
    for (int k = 0; k < half - 1; k++, ri++) {
        const float *a = in + (size_t)ri * cols;
        for (int j = 0; j < cols; j++) sums[j] += a[j];
        count++;
    }
    for (int k = 0; k < window - half + 1; k++, ri++, oi++) {
        const float *a = in + (size_t)ri * cols;
        for (int j = 0; j < cols; j++) sums[j] += a[j];
        count++;
        float c = (float)count;
        for (int j = 0; j < cols; j++) row_out[j] = sums[j] / c;
        emit(ctx, oi, row_out, cols);
    }
    for (int k = 0; k < rows - window; k++, ri++, li++, oi++) {
        const float *a = in + (size_t)ri * cols;
        const float *b = in + (size_t)li * cols;
        float c = (float)count;
        for (int j = 0; j < cols; j++) {
            float s = sums[j] + a[j];
            s = s - b[j];
            sums[j] = s;
            row_out[j] = s / c;
        }
        emit(ctx, oi, row_out, cols);
    }
    for (int k = 0; k < half - 1; k++, li++, oi++) {
        const float *b = in + (size_t)li * cols;
        for (int j = 0; j < cols; j++) sums[j] -= b[j];
        count--;
        float c = (float)count;
        for (int j = 0; j < cols; j++) row_out[j] = sums[j] / c;
        emit(ctx, oi, row_out, cols);
    }
}

/*
 * Second round, along rows: filter each first-round row, keep the 64 sampled columns.
 * Rows are staged LANES at a time for box_1d_lanes.
 */
struct second_rows {
    float *stage;     /* LANES rows */
    float *scratch;   /* LANES rows */
    float *sampled;   /* rows x 64 */
    const int *sample_cols;
    int window, staged, first_row;
};

static void flush_second_rows(struct second_rows *s, int cols) {
    const float *in[LANES];
    float *out[LANES];
    for (int r = 0; r < LANES; r++) {
        in[r] = s->stage + (size_t)r * cols;
        out[r] = s->scratch + (size_t)r * cols;
    }
    if (s->staged == LANES) {
        box_1d_lanes(in, out, cols, s->window);
    } else {
        for (int r = 0; r < s->staged; r++) box_1d(in[r], out[r], cols, s->window);
    }
    for (int r = 0; r < s->staged; r++) {
        float *dst = s->sampled + (size_t)(s->first_row + r) * 64;
        for (int c = 0; c < 64; c++) dst[c] = out[r][s->sample_cols[c]];
    }
    s->staged = 0;
}

static void emit_second_rows(void *ctx, int row, const float *values, int cols) {
    struct second_rows *s = ctx;
    if (s->staged == 0) s->first_row = row;
    memcpy(s->stage + (size_t)s->staged * cols, values, sizeof(float) * (size_t)cols);
    if (++s->staged == LANES) flush_second_rows(s, cols);
}

/* Second round, down columns: keep the whole (rows x 64) result; sampling follows. */
static void emit_copy(void *ctx, int row, const float *values, int cols) {
    float *dst = (float *)ctx + (size_t)row * cols;
    memcpy(dst, values, sizeof(float) * (size_t)cols);
}

static int sample_index(int out_index, int in_dim) {
    return (int)(((out_index + 0.5) * in_dim) / 64);
}

/* Luminance of one row of pixels (bytes_per_pixel 3 or 4, R G B first). */
static void luma_row(const uint8_t *px, int cols, int bpp, float *out) {
    for (int j = 0; j < cols; j++, px += bpp) {
        double y = (double)px[0] * 0.299 + (double)px[1] * 0.587;
        y = y + (double)px[2] * 0.114;
        out[j] = (float)y;
    }
}

/*
 * The 64x64 samples of the blurred luminance. Returns 0, or -1 when out of memory.
 * With `direct` and a 64x64 image, the luminance itself (pdqhash's shortcut for
 * frames already scaled; its dihedral function has no such shortcut).
 */
static int samples_64(const uint8_t *pixels, int rows, int cols, int bpp, int direct,
                      float out[64][64]) {
    if (direct && rows == 64 && cols == 64) {
        for (int i = 0; i < 64; i++) luma_row(pixels + (size_t)i * 64 * bpp, 64, bpp, out[i]);
        return 0;
    }
    int wr = window_size(cols), wc = window_size(rows);
    int sample_cols[64], sample_rows[64];
    for (int k = 0; k < 64; k++) {
        sample_cols[k] = sample_index(k, cols);
        sample_rows[k] = sample_index(k, rows);
    }
    size_t wide = (size_t)cols > 64 ? (size_t)cols : 64;
    float *first = malloc(sizeof(float) * (size_t)rows * cols);
    float *row_a = malloc(sizeof(float) * wide);
    float *row_b = malloc(sizeof(float) * wide);
    float *lanes_in = malloc(sizeof(float) * wide * LANES);
    float *lanes_out = malloc(sizeof(float) * wide * LANES);
    float *sampled = malloc(sizeof(float) * (size_t)rows * 64);
    float *blurred = malloc(sizeof(float) * (size_t)rows * 64);
    int status = -1;
    if (!first || !row_a || !row_b || !lanes_in || !lanes_out || !sampled || !blurred) goto done;

    /* Round 1, along rows, straight from the pixels, LANES rows at a time. */
    int i = 0;
    for (; i + LANES <= rows; i += LANES) {
        const float *in[LANES];
        float *out[LANES];
        for (int r = 0; r < LANES; r++) {
            float *luma = lanes_in + (size_t)r * cols;
            luma_row(pixels + (size_t)(i + r) * cols * bpp, cols, bpp, luma);
            in[r] = luma;
            out[r] = first + (size_t)(i + r) * cols;
        }
        box_1d_lanes(in, out, cols, wr);
    }
    for (; i < rows; i++) {
        luma_row(pixels + (size_t)i * cols * bpp, cols, bpp, row_a);
        box_1d(row_a, first + (size_t)i * cols, cols, wr);
    }
    /* Round 1 down columns, each output row feeding round 2 along rows. */
    struct second_rows second = {lanes_in, lanes_out, sampled, sample_cols, wr, 0, 0};
    box_columns(first, rows, cols, wc, row_a, row_b, emit_second_rows, &second);
    flush_second_rows(&second, cols);
    /* Round 2 down the 64 sampled columns. */
    box_columns(sampled, rows, 64, wc, row_a, row_b, emit_copy, blurred);
    for (int k = 0; k < 64; k++) {
        for (int j = 0; j < 64; j++) out[k][j] = blurred[(size_t)sample_rows[k] * 64 + j];
    }
    status = 0;
done:
    free(first);
    free(row_a);
    free(row_b);
    free(lanes_in);
    free(lanes_out);
    free(sampled);
    free(blurred);
    return status;
}

static int quality_of(float a[64][64]) {
    int gradient_sum = 0;
    for (int i = 0; i < 63; i++) {
        for (int j = 0; j < 64; j++) {
            int d = (int)(((a[i][j] - a[i + 1][j]) * 100.0f) / 255.0f);
            gradient_sum += abs(d);
        }
    }
    for (int i = 0; i < 64; i++) {
        for (int j = 0; j < 63; j++) {
            int d = (int)(((a[i][j] - a[i][j + 1]) * 100.0f) / 255.0f);
            gradient_sum += abs(d);
        }
    }
    int quality = gradient_sum / 90;
    return quality > 100 ? 100 : quality;
}

static void dct_16x16(float a[64][64], float out[16][16]) {
    float t[16][64];
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 64; j++) {
            float sum = 0.0f;
            for (int k = 0; k < 64; k++) sum += dct_matrix[i][k] * a[k][j];
            t[i][j] = sum;
        }
    }
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 16; j++) {
            float sum = 0.0f;
            for (int k = 0; k < 64; k++) sum += t[i][k] * dct_matrix[j][k];
            out[i][j] = sum;
        }
    }
}

static int compare_floats(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* The hash bits, big-endian: bit k (coefficient k = 16 i + j) is 2^k of the number. */
static void hash_bits(float coeffs[16][16], uint8_t out[PDQ_HASH_BYTES]) {
    float sorted[256];
    memcpy(sorted, coeffs, sizeof(sorted));
    qsort(sorted, 256, sizeof(float), compare_floats);
    float median = sorted[127]; /* the 128th smallest, as Torben's method returns */
    memset(out, 0, PDQ_HASH_BYTES);
    for (int k = 0; k < 256; k++) {
        if (coeffs[k >> 4][k & 15] > median) out[31 - (k >> 3)] |= (uint8_t)(1u << (k & 7));
    }
}

/* The 8 rotations and flips, from the DCT's symmetries, in pdqhash's order. */
static float dihedral_value(float c[16][16], int which, int i, int j) {
    /* returns coefficient (i, j) of transform `which` */
    switch (which) {
    case 0: return c[i][j];
    case 1: return (i & 1) ? c[j][i] : -c[j][i];          /* rotate 90 */
    case 2: return ((i + j) & 1) ? -c[i][j] : c[i][j];    /* rotate 180 */
    case 3: return (j & 1) ? c[j][i] : -c[j][i];          /* rotate 270 */
    case 4: return (i & 1) ? c[i][j] : -c[i][j];          /* flip x */
    case 5: return (j & 1) ? c[i][j] : -c[i][j];          /* flip y */
    case 6: return c[j][i];                               /* flip about y = x */
    default: return ((i + j) & 1) ? -c[j][i] : c[j][i];   /* flip about y = -x */
    }
}

static PyObject *pdq_hash(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"pixels", "dihedral", NULL};
    PyObject *source;
    int dihedral = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p", keywords, &source, &dihedral)) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(source, &view, PyBUF_C_CONTIGUOUS) != 0) return NULL;
    if (view.ndim != 3 || view.itemsize != 1 || (view.shape[2] != 3 && view.shape[2] != 4) ||
        view.shape[0] > INT_MAX / 4 || view.shape[1] > INT_MAX / 4) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError,
                        "pixels must be a C-contiguous height x width x 3 (or 4) uint8 array");
        return NULL;
    }
    int rows = (int)view.shape[0], cols = (int)view.shape[1], bpp = (int)view.shape[2];
    int count = dihedral ? 8 : 1;
    uint8_t hashes[8][PDQ_HASH_BYTES];
    int quality = 0, status = 0;
    memset(hashes, 0, sizeof(hashes));
    if (rows >= PDQ_MIN_DIM && cols >= PDQ_MIN_DIM) {
        Py_BEGIN_ALLOW_THREADS
        float samples[64][64], coeffs[16][16], turned[16][16];
        status = samples_64(view.buf, rows, cols, bpp, !dihedral, samples);
        if (status == 0) {
            quality = quality_of(samples);
            dct_16x16(samples, coeffs);
            for (int h = 0; h < count; h++) {
                for (int i = 0; i < 16; i++)
                    for (int j = 0; j < 16; j++) turned[i][j] = dihedral_value(coeffs, h, i, j);
                hash_bits(turned, hashes[h]);
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (status != 0) return PyErr_NoMemory();
    PyObject *list = PyTuple_New(count);
    if (list == NULL) return NULL;
    for (int h = 0; h < count; h++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)hashes[h], PDQ_HASH_BYTES);
        if (b == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(list, h, b);
    }
    return Py_BuildValue("(Ni)", list, quality);
}

static PyMethodDef methods[] = {
    {"hash", (PyCFunction)(void (*)(void))pdq_hash, METH_VARARGS | METH_KEYWORDS,
     "hash(pixels, dihedral=False) -> (hashes, quality)\n\n"
     "PDQ of a height x width x 3 (or x 4, RGBX) uint8 array: a tuple of one 32-byte\n"
     "big-endian hash (eight with dihedral=True, in pdqhash's order) and the quality."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pdq", "PDQ hashes, bit-identical to pdqhash 0.2.8.", -1, methods,
};

PyMODINIT_FUNC PyInit__pdq(void) {
    init_dct_matrix();
    return PyModule_Create(&module);
}
