/*
 * _mih: building and probing the PDQ multi-index-hashing table of
 * hashfed.node.match.index (see its module docstring for the layout and the
 * pigeonhole argument).
 *
 * A PDQ hash is 256 bits: four little-endian uint64 words, or sixteen uint16
 * chunks. For each chunk c, rows[c] holds the row numbers counting-sorted by
 * their chunk value, and offsets[c, v] .. offsets[c, v + 1] is the range of
 * rows[c] whose chunk c equals v (CSR).
 *
 * Both functions take numpy arrays (any C-contiguous buffer of the right item
 * size), check every size they index with, and release the GIL for all their
 * loops: a build or a search never holds up the event loop's thread, and
 * searches run in parallel in worker threads. They keep no state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNKS 16
#define CHUNK_VALUES 65536
#define WORDS 4
#define MAX_PROBES (CHUNKS * 17)
#define LOOKAHEAD 16 /* candidates prefetched ahead of the one being verified */

/* Search in a clone built for POPCNT where the CPU has it (chosen once, at load). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define HOT_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define HOT_CLONES
#endif

static inline int popcount64(uint64_t x) { return __builtin_popcountll(x); }

static inline int distance(const uint64_t *h, const uint64_t *q) {
    return popcount64(h[0] ^ q[0]) + popcount64(h[1] ^ q[1]) + popcount64(h[2] ^ q[2]) +
           popcount64(h[3] ^ q[3]);
}

/* ------------------------------------------------------------------ buffers */

typedef struct {
    const char *name;
    Py_ssize_t itemsize;
    int writable;
    Py_buffer view;
    int held;
} Arg;

/* Takes a C-contiguous buffer of obj with the item size arg expects; sets a
 * ValueError naming the argument otherwise. */
static int arg_get(Arg *arg, PyObject *obj) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (arg->writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &arg->view, flags) != 0) return -1;
    arg->held = 1;
    if (arg->view.itemsize != arg->itemsize) {
        PyErr_Format(PyExc_ValueError, "_mih: %s must have %zd-byte items, got %zd", arg->name,
                     arg->itemsize, arg->view.itemsize);
        return -1;
    }
    return 0;
}

static Py_ssize_t arg_len(const Arg *arg) { return arg->view.len / arg->itemsize; }

static void args_release(Arg *args, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (args[i].held) PyBuffer_Release(&args[i].view);
}

static int want_len(const Arg *arg, Py_ssize_t n) {
    if (arg_len(arg) != n) {
        PyErr_Format(PyExc_ValueError, "_mih: %s holds %zd items, expected %zd", arg->name,
                     arg_len(arg), n);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ build */

/* Counting sort, one chunk at a time (its cursor, 256 KiB, stays in cache). Within a
 * bucket rows keep their order. offsets must be zeroed. Returns 0, or -1 when out of
 * memory. */
static int mih_build(const uint16_t *h16, uint32_t n, uint32_t *offsets, uint32_t *rows) {
    uint32_t *cursor = malloc(sizeof(uint32_t) * CHUNK_VALUES);
    if (cursor == NULL) return -1;
    for (int c = 0; c < CHUNKS; c++) {
        uint32_t *off = offsets + (size_t)c * (CHUNK_VALUES + 1);
        uint32_t *out = rows + (size_t)c * n;
        for (uint32_t i = 0; i < n; i++) off[(uint32_t)h16[(size_t)i * CHUNKS + c] + 1]++;
        for (uint32_t v = 0; v < CHUNK_VALUES; v++) off[v + 1] += off[v];
        memcpy(cursor, off, sizeof(uint32_t) * CHUNK_VALUES);
        for (uint32_t i = 0; i < n; i++) out[cursor[h16[(size_t)i * CHUNKS + c]]++] = i;
    }
    free(cursor);
    return 0;
}

static PyObject *py_build(PyObject *self, PyObject *args) {
    PyObject *o_h16, *o_offsets, *o_rows;
    if (!PyArg_ParseTuple(args, "OOO:build", &o_h16, &o_offsets, &o_rows)) return NULL;
    Arg a[3] = {{"h16", 2, 0}, {"offsets", 4, 1}, {"rows", 4, 1}};
    PyObject *objs[3] = {o_h16, o_offsets, o_rows};
    PyObject *result = NULL;
    for (int i = 0; i < 3; i++)
        if (arg_get(&a[i], objs[i]) != 0) goto done;
    Py_ssize_t n = arg_len(&a[0]) / CHUNKS;
    if (arg_len(&a[0]) % CHUNKS || n > (Py_ssize_t)UINT32_MAX - 1) {
        PyErr_SetString(PyExc_ValueError, "_mih: h16 must be (n, 16), n < 2**32");
        goto done;
    }
    if (want_len(&a[1], (Py_ssize_t)CHUNKS * (CHUNK_VALUES + 1)) || want_len(&a[2], CHUNKS * n))
        goto done;
    int status;
    const uint16_t *h16 = a[0].view.buf;
    uint32_t *offsets = a[1].view.buf, *rows = a[2].view.buf;
    Py_BEGIN_ALLOW_THREADS
    memset(offsets, 0, sizeof(uint32_t) * CHUNKS * (CHUNK_VALUES + 1));
    status = mih_build(h16, (uint32_t)n, offsets, rows);
    Py_END_ALLOW_THREADS
    if (status != 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    args_release(a, 3);
    return result;
}

/* ------------------------------------------------------------------ search */

typedef struct {
    /* queries */
    const uint64_t *qw; /* (m, 4) */
    const uint16_t *q16; /* (m, 16) */
    const int64_t *ts; /* (m,) */
    Py_ssize_t m;
    /* base */
    const uint64_t *b_words; /* (n, 4) */
    const uint16_t *b_h16; /* (n, 16) */
    const uint8_t *b_alive;
    const int64_t *b_ids;
    const uint32_t *offsets; /* (16, 65537) */
    const uint32_t *rows; /* (16, n) */
    Py_ssize_t n;
    /* delta */
    const uint64_t *d_words; /* (>= d_count, 4) */
    const uint8_t *d_alive;
    const int64_t *d_ids;
    Py_ssize_t d_count;
    /* output */
    int64_t *out_ids;
    int32_t *out_d;
    Py_ssize_t cap;
    int64_t *starts; /* (m + 1,) */
} Search;

typedef struct {
    int64_t id;
    int32_t d;
} Hit;

static int hit_order(const void *x, const void *y) {
    const Hit *a = x, *b = y;
    if (a->d != b->d) return a->d < b->d ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

typedef struct {
    uint32_t *cand; /* candidate rows */
    size_t cand_cap;
    uint8_t *cand_c; /* the chunk each was found in */
    size_t cand_c_cap;
    Hit *hits;
    size_t hits_cap;
} Scratch;

static int grow(void **p, size_t *cap, size_t want, size_t item) {
    if (want <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 1024;
    while (cap2 < want) cap2 *= 2;
    void *q = realloc(*p, cap2 * item);
    if (q == NULL) return -1;
    *p = q;
    *cap = cap2;
    return 0;
}

/* Sorts out[lo:hi] by distance, then id. */
static int sort_hits(const Search *s, Scratch *w, Py_ssize_t lo, Py_ssize_t hi) {
    size_t n = (size_t)(hi - lo);
    if (n < 2) return 0;
    if (grow((void **)&w->hits, &w->hits_cap, n, sizeof(Hit))) return -1;
    for (size_t j = 0; j < n; j++) w->hits[j] = (Hit){s->out_ids[lo + j], s->out_d[lo + j]};
    qsort(w->hits, n, sizeof(Hit), hit_order);
    for (size_t j = 0; j < n; j++) {
        s->out_ids[lo + j] = w->hits[j].id;
        s->out_d[lo + j] = w->hits[j].d;
    }
    return 0;
}

/* Searches queries first.. into out[starts[i]:starts[i + 1]]. Returns the first query
 * whose hits did not fit (m when all did), or -1 when out of memory.
 *
 * Per query: (1) read the 16 x 17 bucket ranges and prefetch each bucket's first row;
 * (2) gather the candidate rows; (3) verify them, prefetching ahead, since the hashes
 * they point to are scattered over the whole bank. A row is reported only from the
 * first chunk where it is within reach, so no result set is needed. */
HOT_CLONES
static Py_ssize_t mih_search(const Search *s, Py_ssize_t first, Scratch *w) {
    uint32_t lo_a[MAX_PROBES], hi_a[MAX_PROBES];
    uint8_t c_a[MAX_PROBES];
    Py_ssize_t k = s->starts[first];
    for (Py_ssize_t i = first; i < s->m; i++) {
        const uint64_t *q = s->qw + i * WORDS;
        const uint16_t *q16 = s->q16 + i * CHUNKS;
        const int64_t t = s->ts[i];
        const int radius = t >= 16 ? 1 : 0;
        const Py_ssize_t k0 = k;
        int n_probe = 0;
        size_t total = 0;
        for (int c = 0; c < CHUNKS; c++) {
            const uint32_t *off = s->offsets + (size_t)c * (CHUNK_VALUES + 1);
            for (int p = 0; p < 1 + 16 * radius; p++) {
                uint32_t v = p == 0 ? q16[c] : (uint32_t)(q16[c] ^ (1u << (p - 1)));
                uint32_t lo = off[v], hi = off[v + 1];
                if (hi > lo) {
                    lo_a[n_probe] = lo;
                    hi_a[n_probe] = hi;
                    c_a[n_probe] = (uint8_t)c;
                    n_probe++;
                    total += hi - lo;
                }
            }
        }
        for (int p = 0; p < n_probe; p++)
            __builtin_prefetch(s->rows + (size_t)c_a[p] * s->n + lo_a[p], 0, 3);
        if (grow((void **)&w->cand, &w->cand_cap, total, sizeof(uint32_t))) return -1;
        if (grow((void **)&w->cand_c, &w->cand_c_cap, total, 1)) return -1;
        size_t n_cand = 0;
        for (int p = 0; p < n_probe; p++) {
            const uint32_t *r = s->rows + (size_t)c_a[p] * s->n;
            for (uint32_t j = lo_a[p]; j < hi_a[p]; j++) {
                w->cand[n_cand] = r[j];
                w->cand_c[n_cand] = c_a[p];
                n_cand++;
            }
        }
        for (size_t j = 0; j < n_cand; j++) {
            if (j + LOOKAHEAD < n_cand)
                __builtin_prefetch(s->b_words + (size_t)w->cand[j + LOOKAHEAD] * WORDS, 0, 3);
            const uint32_t r = w->cand[j];
            const int d = distance(s->b_words + (size_t)r * WORDS, q);
            if (d > t || s->b_alive[r] == 0) continue;
            int seen = 0;
            for (int c2 = 0; c2 < w->cand_c[j]; c2++) {
                if (__builtin_popcount((uint32_t)(q16[c2] ^ s->b_h16[(size_t)r * CHUNKS + c2])) <=
                    radius) {
                    seen = 1;
                    break;
                }
            }
            if (seen) continue;
            if (k < s->cap) {
                s->out_ids[k] = s->b_ids[r];
                s->out_d[k] = d;
            }
            k++;
        }
        for (Py_ssize_t r = 0; r < s->d_count; r++) {
            if (s->d_alive[r] == 0) continue;
            const int d = distance(s->d_words + r * WORDS, q);
            if (d <= t) {
                if (k < s->cap) {
                    s->out_ids[k] = s->d_ids[r];
                    s->out_d[k] = d;
                }
                k++;
            }
        }
        if (k > s->cap) return i;
        if (sort_hits(s, w, k0, k)) return -1;
        s->starts[i + 1] = k;
    }
    return s->m;
}

enum {
    A_QW, A_Q16, A_TS, A_BW, A_BH16, A_BALIVE, A_BIDS, A_OFFSETS, A_ROWS,
    A_DW, A_DALIVE, A_DIDS, A_OUTIDS, A_OUTD, A_STARTS, N_ARGS
};

static PyObject *py_search(PyObject *self, PyObject *args) {
    PyObject *o[N_ARGS];
    Py_ssize_t d_count, first;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOnOOOn:search", &o[A_QW], &o[A_Q16], &o[A_TS],
                          &o[A_BW], &o[A_BH16], &o[A_BALIVE], &o[A_BIDS], &o[A_OFFSETS],
                          &o[A_ROWS], &o[A_DW], &o[A_DALIVE], &o[A_DIDS], &d_count,
                          &o[A_OUTIDS], &o[A_OUTD], &o[A_STARTS], &first))
        return NULL;
    Arg a[N_ARGS] = {
        [A_QW] = {"qs", 8, 0},          [A_Q16] = {"q16s", 2, 0},
        [A_TS] = {"ts", 8, 0},          [A_BW] = {"b_words", 8, 0},
        [A_BH16] = {"b_h16", 2, 0},     [A_BALIVE] = {"b_alive", 1, 0},
        [A_BIDS] = {"b_ids", 8, 0},     [A_OFFSETS] = {"offsets", 4, 0},
        [A_ROWS] = {"rows", 4, 0},      [A_DW] = {"d_words", 8, 0},
        [A_DALIVE] = {"d_alive", 1, 0}, [A_DIDS] = {"d_ids", 8, 0},
        [A_OUTIDS] = {"out_ids", 8, 1}, [A_OUTD] = {"out_d", 4, 1},
        [A_STARTS] = {"starts", 8, 1},
    };
    PyObject *result = NULL;
    for (int i = 0; i < N_ARGS; i++)
        if (arg_get(&a[i], o[i]) != 0) goto done;
    Py_ssize_t m = arg_len(&a[A_TS]), n = arg_len(&a[A_BIDS]);
    if (want_len(&a[A_QW], WORDS * m) || want_len(&a[A_Q16], CHUNKS * m) ||
        want_len(&a[A_BW], WORDS * n) || want_len(&a[A_BH16], CHUNKS * n) ||
        want_len(&a[A_BALIVE], n) || want_len(&a[A_OFFSETS], CHUNKS * (CHUNK_VALUES + 1)) ||
        want_len(&a[A_ROWS], CHUNKS * n) || want_len(&a[A_STARTS], m + 1) ||
        want_len(&a[A_OUTD], arg_len(&a[A_OUTIDS])))
        goto done;
    if (d_count < 0 || d_count > arg_len(&a[A_DIDS]) || d_count > arg_len(&a[A_DALIVE]) ||
        d_count * WORDS > arg_len(&a[A_DW])) {
        PyErr_SetString(PyExc_ValueError, "_mih: d_count exceeds the delta's arrays");
        goto done;
    }
    if (first < 0 || first > m) {
        PyErr_SetString(PyExc_ValueError, "_mih: first is not a query");
        goto done;
    }
    const int64_t *ts = a[A_TS].view.buf;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (ts[i] < 0 || ts[i] > 31) {
            PyErr_SetString(PyExc_ValueError, "_mih: thresholds must be between 0 and 31");
            goto done;
        }
    }
    const uint32_t *offsets = a[A_OFFSETS].view.buf;
    for (int c = 0; c < CHUNKS; c++) {
        if (offsets[(size_t)c * (CHUNK_VALUES + 1) + CHUNK_VALUES] != (uint64_t)n) {
            PyErr_SetString(PyExc_ValueError, "_mih: offsets do not belong to this bank");
            goto done;
        }
    }
    Search s = {
        a[A_QW].view.buf, a[A_Q16].view.buf, ts, m,
        a[A_BW].view.buf, a[A_BH16].view.buf, a[A_BALIVE].view.buf, a[A_BIDS].view.buf,
        offsets, a[A_ROWS].view.buf, n,
        a[A_DW].view.buf, a[A_DALIVE].view.buf, a[A_DIDS].view.buf, d_count,
        a[A_OUTIDS].view.buf, a[A_OUTD].view.buf, arg_len(&a[A_OUTIDS]), a[A_STARTS].view.buf,
    };
    if (s.starts[first] < 0 || s.starts[first] > s.cap) {
        PyErr_SetString(PyExc_ValueError, "_mih: starts[first] is outside the output");
        goto done;
    }
    Scratch w = {0};
    Py_ssize_t stopped;
    Py_BEGIN_ALLOW_THREADS
    stopped = mih_search(&s, first, &w);
    Py_END_ALLOW_THREADS
    free(w.cand);
    free(w.cand_c);
    free(w.hits);
    if (stopped < 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyLong_FromSsize_t(stopped);
done:
    args_release(a, N_ARGS);
    return result;
}

static PyMethodDef methods[] = {
    {"build", py_build, METH_VARARGS,
     "build(h16, offsets, rows): counting-sort the rows of h16 ((n, 16) uint16) by each\n"
     "chunk into offsets ((16, 65537) uint32) and rows ((16, n) uint32)."},
    {"search", py_search, METH_VARARGS,
     "search(qs, q16s, ts, b_words, b_h16, b_alive, b_ids, offsets, rows, d_words,\n"
     "d_alive, d_ids, d_count, out_ids, out_d, starts, first) -> int: search queries\n"
     "first.. into out[starts[i]:starts[i+1]], sorted by distance then id; return the\n"
     "first query whose hits did not fit (len(ts) when all did)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mih", "The PDQ multi-index-hashing table: build and search.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__mih(void) { return PyModule_Create(&module); }
