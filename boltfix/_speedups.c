/*
 * boltfix._speedups: the walk's clean path and the JSONL writer in C.
 *
 * Optional.  boltfix/walk.py is the reference: every page this module
 * accepts is one the Python walk would accept without a single finding, and
 * it leaves every other page on the stack for the Python walk to handle,
 * untouched.  So the C path never decides what is damage; it only takes the
 * pages that are not.  tests/test_speedups.py runs check, dump and repair
 * both ways over every fixture and damage kind and compares the results.
 *
 * Layout (bbolt 1.3.6, page.go): a 16-byte page header
 *   id u64 | flags u16 | count u16 | overflow u32
 * then `count` 16-byte elements
 *   leaf:   flags u32 | pos u32 | ksize u32 | vsize u32
 *   branch: pos u32 | ksize u32 | pgid u64
 * with `pos` relative to the element itself.  All little-endian.
 *
 * Every offset is checked against the mapped length before it is read, and
 * the reachability map's length before it is written: the module is safe on
 * any bytes, including a file that changes while it is read.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define PAGE_HEADER_SIZE 16
#define ELEMENT_SIZE 16
#define BRANCH_PAGE_FLAG 0x01
#define LEAF_PAGE_FLAG 0x02
#define BUCKET_LEAF_FLAG 0x01
#define REACHED 1
#define OVERFLOW 2
/* leaves.KEY_BYTES_PER_PAGE: a leaf page whose keys add up to more is read in
 * Python one record at a time (crafted elements can share their key bytes) */
#define KEY_BYTES_PER_PAGE (1u << 20)

/* explicit little-endian loads: correct on any host, one load on x86/arm */
static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
/* etcd's revision keys are big-endian */
static inline uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* a key in the map or in a bytes object; p == NULL stands for None */
typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
} key_ref;

/* Python's bytes ordering: memcmp, then the shorter is smaller */
static int key_cmp(key_ref a, key_ref b)
{
    Py_ssize_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, (size_t)n) : 0;
    if (c)
        return c;
    return (a.n > b.n) - (a.n < b.n);
}

/* bytes -> key_ref, None -> {NULL}; anything else is not ours to judge */
static int as_key(PyObject *o, key_ref *k)
{
    if (o == Py_None) {
        k->p = NULL;
        k->n = 0;
        return 1;
    }
    if (!PyBytes_Check(o))
        return 0;
    k->p = (const unsigned char *)PyBytes_AS_STRING(o);
    k->n = PyBytes_GET_SIZE(o);
    return 1;
}

typedef struct {
    const unsigned char *map;
    uint64_t maplen;
    unsigned char *reached;
    uint64_t page_size, hwm, npages; /* npages: whole pages in the file */
} walk_ctx;

/* what a clean page looked like */
typedef struct {
    uint16_t flags, count;
    uint32_t overflow;
    uint64_t off, end; /* page start, end of its run */
    key_ref first, final; /* first and last key (count > 0) */
} page_info;

/*
 * Is page `pgid`, followed with key range [lo, hi) after key `last`, one
 * the Python walk takes whole without a finding?  Nothing is changed.
 * It mirrors walk.Walker._follow, _needed_overflow, _mark_overflow,
 * _branch_children and leaves.leaf_page; any doubt answers 0 (Python decides).
 */
static int page_clean(const walk_ctx *c, uint64_t pgid, int has_parents, key_ref lo, key_ref hi,
                      key_ref last, page_info *pi)
{
    const uint64_t ps = c->page_size;
    if (pgid < 2 || pgid >= c->hwm || pgid >= c->npages || c->reached[pgid])
        return 0; /* _bad_pointer */
    const uint64_t off = pgid * ps;
    const unsigned char *h = c->map + off;
    const uint16_t flags = le16(h + 8), count = le16(h + 10);
    const uint32_t overflow = le32(h + 12);
    if (flags != BRANCH_PAGE_FLAG && flags != LEAF_PAGE_FLAG)
        return 0; /* invalid-page-type */
    if (le64(h) != pgid)
        return 0; /* page-id-mismatch */
    if (count == 0 && (has_parents || flags == BRANCH_PAGE_FLAG))
        return 0; /* _zero_count */
    const uint64_t lastpg = pgid + overflow;
    if (lastpg >= c->hwm || lastpg >= c->npages)
        return 0; /* the overflow run leaves the file */
    const uint64_t end = (lastpg + 1) * ps;
    if (end > c->maplen)
        return 0;
    const uint64_t base = off + PAGE_HEADER_SIZE;
    const uint64_t floor = base + (uint64_t)ELEMENT_SIZE * count;
    if (floor > end)
        return 0; /* element-count-corrupt / -overflow */
    const int leaf = flags == LEAF_PAGE_FLAG;
    uint64_t top = floor; /* reader.elements_end */
    key_ref prev = {NULL, 0};
    uint64_t held = 0; /* key bytes (leaves.leaf_page, Walker._branch_children) */
    for (uint32_t i = 0; i < count; i++) {
        const uint64_t eoff = base + (uint64_t)ELEMENT_SIZE * i;
        const unsigned char *e = c->map + eoff;
        uint64_t k, stop, ksize;
        if (leaf) {
            if (le32(e) & BUCKET_LEAF_FLAG)
                return 0; /* a bucket entry: walk_batches splits the page */
            ksize = le32(e + 8);
            k = eoff + le32(e + 4);
            stop = k + ksize + le32(e + 12);
        } else {
            ksize = le32(e + 4);
            k = eoff + le32(e);
            stop = k + ksize;
        }
        if (!ksize || stop > end || k < floor)
            return 0; /* key-empty, element-out-of-bounds */
        held += ksize;
        if (held > KEY_BYTES_PER_PAGE)
            return 0; /* keys sharing bytes: Python reads them one at a time
                         (a branch's keys past the budget are not kept) */
        if (stop > top)
            top = stop;
        key_ref key = {c->map + k, (Py_ssize_t)ksize};
        if (i == 0) {
            pi->first = key;
            if (leaf && last.p && key_cmp(key, last) <= 0)
                return 0; /* key-order across pages */
        } else if (key_cmp(prev, key) >= 0) {
            return 0; /* key-order on the page */
        }
        prev = key;
    }
    if (count) {
        pi->final = prev;
        /* keys ascend, so the first and last bound them all */
        /* bbolt sets a branch key to its child's first key: anything else
         * (a damaged element 0, a stale page, or a lower bound inherited
         * from a damaged parent key) is Python's to judge */
        if (lo.p && key_cmp(pi->first, lo) != 0)
            return 0; /* key-out-of-range, child-key-mismatch */
        if (hi.p && key_cmp(prev, hi) >= 0)
            return 0;
    }
    if (overflow) {
        const uint64_t used = top - off;
        const uint64_t needed = (used + ps - 1) / ps - 1;
        if (needed < overflow)
            return 0; /* page-overflow-too-large */
        for (uint64_t p = pgid + 1; p <= lastpg; p++)
            if (c->reached[p])
                return 0; /* the run overlaps a page reached elsewhere */
    }
    pi->flags = flags;
    pi->count = count;
    pi->overflow = overflow;
    pi->off = off;
    pi->end = end;
    return 1;
}

/* (child, lo, hi, path) frames of a clean branch page, pushed so that
 * child 0 is popped first: walk.Walker._branch_children with all keys
 * trusted. */
static int push_children(const walk_ctx *c, PyObject *stack, const page_info *pi, uint64_t pgid,
                         PyObject *parents, PyObject *hi)
{
    Py_ssize_t np = PyTuple_GET_SIZE(parents);
    PyObject *path = PyTuple_New(np + 1);
    if (!path)
        return -1;
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *p = PyTuple_GET_ITEM(parents, i);
        Py_INCREF(p);
        PyTuple_SET_ITEM(path, i, p);
    }
    PyObject *me = PyLong_FromUnsignedLongLong(pgid);
    if (!me) {
        Py_DECREF(path);
        return -1;
    }
    PyTuple_SET_ITEM(path, np, me);

    int rc = -1;
    const uint64_t base = pi->off + PAGE_HEADER_SIZE;
    PyObject *upper = hi; /* borrowed or owned by `owned_upper` */
    PyObject *owned_upper = NULL;
    Py_INCREF(upper);
    owned_upper = upper;
    for (int i = (int)pi->count - 1; i >= 0; i--) {
        const uint64_t eoff = base + (uint64_t)ELEMENT_SIZE * i;
        const unsigned char *e = c->map + eoff;
        const uint64_t k = eoff + le32(e);
        const uint32_t ksize = le32(e + 4);
        if (k < base + (uint64_t)ELEMENT_SIZE * pi->count || k + ksize > pi->end) {
            PyErr_Format(PyExc_ValueError, "branch page %llu changed while it was read",
                         (unsigned long long)pgid);
            goto done;
        }
        PyObject *key = PyBytes_FromStringAndSize((const char *)c->map + k, ksize);
        PyObject *child = PyLong_FromUnsignedLongLong(le64(e + 8));
        PyObject *frame = NULL;
        if (key && child)
            frame = PyTuple_Pack(4, child, key, owned_upper, path);
        Py_XDECREF(child);
        if (!frame || PyList_Append(stack, frame) < 0) {
            Py_XDECREF(frame);
            Py_XDECREF(key);
            goto done;
        }
        Py_DECREF(frame);
        Py_DECREF(owned_upper);
        owned_upper = key; /* the next child (to the left) ends at this key */
    }
    rc = 0;
done:
    Py_XDECREF(owned_upper);
    Py_DECREF(path);
    return rc;
}

static int get_buffer(PyObject *o, Py_buffer *view, int writable, const char *what)
{
    if (PyObject_GetBuffer(o, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be contiguous", what);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(advance_doc,
"advance(stack, buf, reached, page_size, hwm, npages, last, max_leaves[, max_pages])\n"
"-> (leaves, last, pages_walked, pages, depth, records, more)\n\n"
"Walk clean frames off the top of `stack` (walk.Walker._tree_leaves' stack\n"
"of (pgid, lo, hi, parents) tuples) until it is empty, its top frame is not\n"
"clean, `max_leaves` leaf pages with records were taken, or `max_pages`\n"
"pages, overflow included, were walked (the walk then drops the map from\n"
"RSS: boltfix.resident).  `leaves` lists them as (pgid, count, end) in key\n"
"order; `more` is True when it stopped only because of a maximum.");

static PyObject *advance(PyObject *self, PyObject *args)
{
    PyObject *stack, *bufobj, *reachedobj, *last;
    unsigned long long page_size, hwm, npages;
    Py_ssize_t max_leaves;
    unsigned long long max_pages = (unsigned long long)-1;
    if (!PyArg_ParseTuple(args, "O!OOKKKOn|K:advance", &PyList_Type, &stack, &bufobj, &reachedobj,
                          &page_size, &hwm, &npages, &last, &max_leaves, &max_pages))
        return NULL;
    if (page_size < 512) {
        PyErr_SetString(PyExc_ValueError, "page size below 512");
        return NULL;
    }
    if (max_leaves < 1)
        max_leaves = 1; /* the caller loops while `more`: always make progress */
    key_ref lastk;
    if (!as_key(last, &lastk)) {
        PyErr_SetString(PyExc_TypeError, "last must be bytes or None");
        return NULL;
    }
    Py_buffer buf, reached;
    if (get_buffer(bufobj, &buf, 0, "buf") < 0)
        return NULL;
    if (get_buffer(reachedobj, &reached, 1, "reached") < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    walk_ctx c = {buf.buf, (uint64_t)buf.len, reached.buf, page_size, hwm, npages};
    /* never index past either map */
    if (c.npages > c.maplen / page_size)
        c.npages = c.maplen / page_size;
    if (c.npages > (uint64_t)reached.len)
        c.npages = (uint64_t)reached.len;

    PyObject *leaves = PyList_New(0), *result = NULL;
    unsigned long long walked = 0, pages = 0, records = 0;
    Py_ssize_t depth = 0, nleaves = 0;
    int more = 0, last_in_map = 0;
    if (!leaves)
        goto out;
    Py_INCREF(last);
    while (PyList_GET_SIZE(stack)) {
        if (nleaves >= max_leaves || pages >= max_pages) {
            more = 1;
            break;
        }
        PyObject *frame = PyList_GET_ITEM(stack, PyList_GET_SIZE(stack) - 1);
        if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 4)
            break;
        PyObject *pgo = PyTuple_GET_ITEM(frame, 0), *loo = PyTuple_GET_ITEM(frame, 1),
                 *hio = PyTuple_GET_ITEM(frame, 2), *parents = PyTuple_GET_ITEM(frame, 3);
        key_ref lo, hi;
        if (!PyLong_Check(pgo) || !PyTuple_Check(parents) || !as_key(loo, &lo) || !as_key(hio, &hi))
            break;
        uint64_t pgid = PyLong_AsUnsignedLongLong(pgo);
        if (pgid == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear(); /* negative or huge: Python reports it */
            break;
        }
        page_info pi;
        if (!page_clean(&c, pgid, PyTuple_GET_SIZE(parents) > 0, lo, hi, lastk, &pi))
            break;
        /* take it: pop the frame (kept alive for its parents and hi) */
        Py_INCREF(frame);
        if (PyList_SetSlice(stack, PyList_GET_SIZE(stack) - 1, PyList_GET_SIZE(stack), NULL) < 0) {
            Py_DECREF(frame);
            goto out_last;
        }
        c.reached[pgid] = REACHED;
        if (pi.overflow)
            memset(c.reached + pgid + 1, OVERFLOW, pi.overflow);
        walked++;
        pages += 1ULL + pi.overflow;
        if (PyTuple_GET_SIZE(parents) + 1 > depth)
            depth = PyTuple_GET_SIZE(parents) + 1;
        int rc = 0;
        if (pi.flags == BRANCH_PAGE_FLAG) {
            rc = push_children(&c, stack, &pi, pgid, parents, hio);
        } else if (pi.count) {
            PyObject *leaf = Py_BuildValue("(KIK)", (unsigned long long)pgid, (unsigned)pi.count,
                                           (unsigned long long)pi.end);
            rc = leaf ? PyList_Append(leaves, leaf) : -1;
            Py_XDECREF(leaf);
            lastk = pi.final; /* points into the map: made bytes once, at the end */
            last_in_map = 1;
            records += pi.count;
            nleaves++;
        }
        Py_DECREF(frame);
        if (rc < 0)
            goto out_last;
    }
    if (last_in_map) {
        Py_DECREF(last);
        last = PyBytes_FromStringAndSize((const char *)lastk.p, lastk.n);
        if (!last)
            goto out;
    }
    result = Py_BuildValue("(NOKKnKO)", leaves, last, walked, pages, depth, records,
                           more ? Py_True : Py_False);
    leaves = NULL;
out_last:
    Py_XDECREF(last);
out:
    Py_XDECREF(leaves);
    PyBuffer_Release(&reached);
    PyBuffer_Release(&buf);
    return result;
}

/* ------------------------------------------------------------ hex JSONL */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
/* 32 bytes at a time where the CPU has AVX2 (chosen once, at import) */
__attribute__((target("avx2"))) static unsigned char *hex_encode_avx2(unsigned char *dst,
                                                                      const unsigned char *src,
                                                                      size_t n)
{
    const __m256i mask = _mm256_set1_epi8(0x0f), nine = _mm256_set1_epi8(9),
                  zero = _mm256_set1_epi8('0'), gap = _mm256_set1_epi8('a' - '0' - 10);
    while (n >= 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)src);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask), lo = _mm256_and_si256(x, mask);
        /* unpack works per 128-bit lane: bytes 0-7|16-23 and 8-15|24-31 */
        __m256i a = _mm256_unpacklo_epi8(hi, lo), b = _mm256_unpackhi_epi8(hi, lo);
        a = _mm256_add_epi8(_mm256_add_epi8(a, zero), _mm256_and_si256(_mm256_cmpgt_epi8(a, nine), gap));
        b = _mm256_add_epi8(_mm256_add_epi8(b, zero), _mm256_and_si256(_mm256_cmpgt_epi8(b, nine), gap));
        _mm256_storeu_si256((__m256i *)dst, _mm256_permute2x128_si256(a, b, 0x20));
        _mm256_storeu_si256((__m256i *)(dst + 32), _mm256_permute2x128_si256(a, b, 0x31));
        src += 32;
        dst += 64;
        n -= 32;
    }
    static const char digits[] = "0123456789abcdef";
    while (n--) {
        *dst++ = (unsigned char)digits[*src >> 4];
        *dst++ = (unsigned char)digits[*src++ & 15];
    }
    return dst;
}
static int use_avx2;
#endif

static inline unsigned char *hex_encode(unsigned char *dst, const unsigned char *src, size_t n)
{
#if defined(HAVE_AVX2_PATH)
    if (use_avx2 && n >= 32)
        return hex_encode_avx2(dst, src, n);
#endif
#if defined(__SSE2__)
    const __m128i mask = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9), zero = _mm_set1_epi8('0'),
                  gap = _mm_set1_epi8('a' - '0' - 10);
    while (n >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)src);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), mask), lo = _mm_and_si128(x, mask);
        __m128i a = _mm_unpacklo_epi8(hi, lo), b = _mm_unpackhi_epi8(hi, lo);
        a = _mm_add_epi8(_mm_add_epi8(a, zero), _mm_and_si128(_mm_cmpgt_epi8(a, nine), gap));
        b = _mm_add_epi8(_mm_add_epi8(b, zero), _mm_and_si128(_mm_cmpgt_epi8(b, nine), gap));
        _mm_storeu_si128((__m128i *)dst, a);
        _mm_storeu_si128((__m128i *)(dst + 16), b);
        src += 16;
        dst += 32;
        n -= 16;
    }
#endif
    static const char digits[] = "0123456789abcdef";
    while (n--) {
        *dst++ = (unsigned char)digits[*src >> 4];
        *dst++ = (unsigned char)digits[*src++ & 15];
    }
    return dst;
}

static size_t decimal_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static unsigned char *put_decimal(unsigned char *dst, uint64_t v, size_t len)
{
    for (size_t i = len; i-- > 0;) {
        dst[i] = (unsigned char)('0' + v % 10);
        v /= 10;
    }
    return dst + len;
}

/* one leaf of advance()'s `leaves` list, re-checked against the map: the
 * file may have changed since advance() looked (a damaged page must not be
 * read) */
typedef struct {
    const unsigned char *map;
    uint64_t pgid, end, base, floor; /* elements from base to floor, data up to end */
    uint32_t count;
} leaf_ref;

static int changed(uint64_t pgid)
{
    PyErr_Format(PyExc_ValueError, "leaf page %llu changed while it was read",
                 (unsigned long long)pgid);
    return -1;
}

static int leaf_at(PyObject *leaves, Py_ssize_t i, const Py_buffer *buf, uint64_t ps, leaf_ref *lf)
{
    unsigned long long g, e;
    unsigned int n;
    const uint64_t maplen = (uint64_t)buf->len;
    if (!PyArg_ParseTuple(PyList_GET_ITEM(leaves, i), "KIK", &g, &n, &e))
        return -1;
    if (g >= maplen / ps || e > maplen || g * ps + PAGE_HEADER_SIZE + (uint64_t)n * ELEMENT_SIZE > e)
        return changed(g);
    lf->map = buf->buf;
    lf->pgid = g;
    lf->end = e;
    lf->count = n;
    lf->base = g * ps + PAGE_HEADER_SIZE;
    lf->floor = lf->base + (uint64_t)ELEMENT_SIZE * n;
    return 0;
}

/* record j of a leaf, its key and value checked against the leaf's run */
static int leaf_record(const leaf_ref *lf, uint32_t j, const unsigned char **key, uint64_t *ksize,
                       const unsigned char **value, uint64_t *vsize)
{
    const uint64_t eoff = lf->base + (uint64_t)ELEMENT_SIZE * j;
    const unsigned char *e = lf->map + eoff;
    const uint64_t k = eoff + le32(e + 4);
    *ksize = le32(e + 8);
    *vsize = le32(e + 12);
    if (k < lf->floor || k + *ksize + *vsize > lf->end)
        return changed(lf->pgid);
    *key = lf->map + k;
    *value = *key + *ksize;
    return 0;
}

/* the (buf, page_size, leaves) arguments of the functions over leaves */
static int leaves_args(PyObject *args, const char *fmt, Py_buffer *buf, unsigned long long *ps,
                       PyObject **leaves)
{
    PyObject *bufobj;
    if (!PyArg_ParseTuple(args, fmt, &bufobj, ps, &PyList_Type, leaves))
        return -1;
    if (*ps < 512) {
        PyErr_SetString(PyExc_ValueError, "page size below 512");
        return -1;
    }
    return get_buffer(bufobj, buf, 0, "buf");
}

/* ------------------------------------------------------------ etcd check */
/* protowire.decode_varint: at most 10 bytes, the 10th at most 1 */
static int varint(const unsigned char *p, uint64_t n, uint64_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (*pos >= n)
            return 0;
        const unsigned char b = p[(*pos)++];
        if (i == 9 && (b & 0x80 || b > 1))
            return 0;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* an mvccpb.KeyValue as etcd._decode_key_value reads it (last occurrence wins) */
typedef struct {
    const unsigned char *key, *value;
    uint64_t key_len, value_len;
    uint64_t create_revision, mod_revision, version, lease; /* raw varints */
    int unknown; /* a field other than 1-6 */
} key_value;

/* protowire.iter_fields' rules and _KV_SCHEMA's wire types; 0 when Python
 * would report an error */
static int parse_key_value(const unsigned char *v, uint64_t vlen, key_value *kv)
{
    memset(kv, 0, sizeof *kv);
    uint64_t pos = 0, tag, x;
    while (pos < vlen) {
        if (!varint(v, vlen, &pos, &tag))
            return 0;
        const uint64_t field = tag >> 3;
        const unsigned wire = (unsigned)(tag & 7);
        if (field == 0 || field > (1u << 29) - 1)
            return 0;
        switch (wire) {
        case 0:
            if (!varint(v, vlen, &pos, &x))
                return 0;
            break;
        case 1:
            if (vlen - pos < 8)
                return 0;
            pos += 8;
            break;
        case 2:
            if (!varint(v, vlen, &pos, &x) || x > vlen - pos)
                return 0;
            pos += x;
            break;
        case 5:
            if (vlen - pos < 4)
                return 0;
            pos += 4;
            break;
        default:
            return 0; /* groups, wire types 6 and 7 */
        }
        if (field == 1 || field == 5) {
            if (wire != 2)
                return 0;
            if (field == 1) {
                kv->key = v + pos - x;
                kv->key_len = x;
            } else {
                kv->value = v + pos - x;
                kv->value_len = x;
            }
        } else if (field >= 2 && field <= 6) {
            if (wire != 0)
                return 0;
            uint64_t *slot = field == 2 ? &kv->create_revision : field == 3 ? &kv->mod_revision
                             : field == 4 ? &kv->version : &kv->lease;
            *slot = x;
        } else {
            kv->unknown = 1;
        }
    }
    return 1;
}

/* etcdkeys.decode_revision: 17 bytes, or 18 ending in 't', '_' at byte 8;
 * -1 when not a revision, else whether it is a tombstone */
static int revision_kind(const unsigned char *k, uint64_t klen)
{
    int tombstone;
    if (klen == 18 && k[17] == 't')
        tombstone = 1;
    else if (klen == 17)
        tombstone = 0;
    else
        return -1;
    return k[8] == '_' ? tombstone : -1;
}

/*
 * Would etcd.check_key_record(key, value) find nothing?  A revision key
 * whose value is a well-formed mvccpb.KeyValue with a non-empty key unless
 * a tombstone.  0 means "ask Python", never "bad".
 */
static int etcd_key_record_clean(const unsigned char *k, uint64_t klen, const unsigned char *v,
                                 uint64_t vlen)
{
    key_value kv;
    const int tombstone = revision_kind(k, klen);
    if (tombstone < 0 || !parse_key_value(v, vlen, &kv))
        return 0;
    return tombstone || kv.key_len > 0;
}

/* ------------------------------------------------------------ JSONL lines */
/*
 * Where the lines go.  Pass 1 measures (o == NULL: only n grows); pass 2
 * writes into a buffer of exactly that size, never past `cap`: a page that
 * changed between the passes sets `overflow` instead of writing past it.
 */
typedef struct {
    unsigned char *o;
    size_t n, cap;
    int overflow;
} sink;

static inline int room(sink *s, size_t len)
{
    if (!s->o) {
        s->n += len;
        return 0;
    }
    if (s->cap - s->n < len) {
        s->overflow = 1;
        return 0;
    }
    return 1;
}

static inline void put(sink *s, const void *p, size_t len)
{
    if (room(s, len)) {
        memcpy(s->o + s->n, p, len);
        s->n += len;
    }
}

/* a string literal, its length counted by the compiler */
#define put_lit(s, lit) put((s), (lit), sizeof(lit) - 1)

static inline void put_buf(sink *s, const Py_buffer *b) { put(s, b->buf, (size_t)b->len); }

static void put_hex(sink *s, const unsigned char *p, uint64_t n)
{
    if (room(s, 2 * (size_t)n)) {
        hex_encode(s->o + s->n, p, n);
        s->n += 2 * (size_t)n;
    }
}

static void put_u64(sink *s, uint64_t v)
{
    const size_t len = decimal_len(v);
    if (room(s, len)) {
        put_decimal(s->o + s->n, v, len);
        s->n += len;
    }
}

/* etcd's int64 fields (protowire.int64): the raw u64 read as signed */
static void put_i64(sink *s, uint64_t v)
{
    if (v >> 63) {
        put_lit(s, "-");
        put_u64(s, ~v + 1);
    } else {
        put_u64(s, v);
    }
}

/* how a key or value is written: text.py's _enc_hex, or _enc_auto */
enum { AS_HEX, AS_TEXT, AS_PYTHON };

/*
 * _enc_auto's (and bigrecord.render_bytes') choice (text.as_text) for bytes whose answer needs
 * no Unicode tables: text when every byte is printable ASCII or \t \n \r;
 * hex as soon as a byte is another ASCII control (it is that character in
 * any decoding, and not printable); AS_PYTHON for non-ASCII without such a
 * control (Python decides).
 */
static int auto_kind(const unsigned char *p, uint64_t n)
{
    int high = 0;
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char b = p[i];
        if (b >= 0x80)
            high = 1;
        else if ((b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7f)
            return AS_HEX;
    }
    return high ? AS_PYTHON : AS_TEXT;
}

/* a JSON string of printable ASCII, with json.encoder's escapes */
static void put_text(sink *s, const unsigned char *p, uint64_t n)
{
    size_t extra = 0;
    for (uint64_t i = 0; i < n; i++)
        extra += p[i] == '"' || p[i] == '\\' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r';
    if (!room(s, (size_t)n + extra + 2))
        return;
    unsigned char *o = s->o + s->n;
    *o++ = '"';
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char b = p[i];
        switch (b) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        default: *o++ = b;
        }
    }
    *o++ = '"';
    s->n += (size_t)n + extra + 2;
}

/* a dump key or value: "hex" (+ its note under auto) or "text" */
static void put_field(sink *s, const unsigned char *p, uint64_t n, int kind, int automatic,
                      const Py_buffer *note)
{
    if (kind == AS_TEXT) {
        put_text(s, p, n);
        return;
    }
    put_lit(s, "\"");
    put_hex(s, p, n);
    put_lit(s, "\"");
    if (automatic)
        put_buf(s, note);
}

/* an etcd bytes value (bigrecord.render_bytes): "text" or {"hex":"..."} */
static void put_etcd_bytes(sink *s, const unsigned char *p, uint64_t n, int kind)
{
    if (kind == AS_TEXT) {
        put_text(s, p, n);
        return;
    }
    put_lit(s, "{\"hex\":\"");
    put_hex(s, p, n);
    put_lit(s, "\"}");
}

/*
 * The "etcd" object dump gives a `key` bucket record (etcd.decode_record
 * through json.dumps), when it is one C can write: a clean revision key, a
 * KeyValue of fields 1-6 only, its key and value printable ASCII or
 * certainly hex.  0: Python must write this record.
 */
static int put_etcd_key_record(sink *s, const unsigned char *k, uint64_t klen,
                               const unsigned char *v, uint64_t vlen)
{
    key_value kv;
    const int tombstone = revision_kind(k, klen);
    if (tombstone < 0 || !parse_key_value(v, vlen, &kv) || kv.unknown)
        return 0;
    const int kk = auto_kind(kv.key, kv.key_len), vk = auto_kind(kv.value, kv.value_len);
    if (kk == AS_PYTHON || vk == AS_PYTHON)
        return 0;
    put_lit(s, "{\"revision\":{\"main\":");
    put_i64(s, be64(k));
    put_lit(s, ",\"sub\":");
    put_i64(s, be64(k + 9));
    if (tombstone)
        put_lit(s, ",\"tombstone\":true},\"key\":");
    else
        put_lit(s, ",\"tombstone\":false},\"key\":");
    put_etcd_bytes(s, kv.key, kv.key_len, kk);
    put_lit(s, ",\"create_revision\":");
    put_i64(s, kv.create_revision);
    put_lit(s, ",\"mod_revision\":");
    put_i64(s, kv.mod_revision);
    put_lit(s, ",\"version\":");
    put_i64(s, kv.version);
    put_lit(s, ",\"value\":");
    put_etcd_bytes(s, kv.value, kv.value_len, vk);
    put_lit(s, ",\"lease\":");
    put_i64(s, kv.lease);
    put_lit(s, "}");
    return 1;
}

/* whether needle (m > 0 bytes) occurs in hay */
static int contains(const unsigned char *hay, uint64_t n, const char *needle, size_t m)
{
    const unsigned char *p = hay, *end = hay + n;
    while ((uint64_t)(end - p) >= m) {
        p = memchr(p, needle[0], (size_t)(end - p) - m + 1);
        if (!p)
            return 0;
        if (memcmp(p, needle, m) == 0)
            return 1;
        p++;
    }
    return 0;
}

/*
 * secrets.kv_secret_ranges' quick no, for dump's `key` records: a KeyValue that
 * may hold a secret spells one of secrets.QUICK_MARKERS out.  1: hand it back.
 * The JSON escape "\\u" (a kind "Secret" spelt escaped) can only make a
 * JSON value secret: it counts when the value starts with "{", or when the
 * record is no clean KeyValue (Python's wire decoder may still read one).
 */
static int k8s_maybe_secret(const unsigned char *v, uint64_t vlen)
{
    /* secrets.QUICK_MARKERS but "\\u" */
    static const char *const markers[] = {"Secret", "oauth", "/registry/secrets/",
                                          "/kubernetes.io/secrets/", "/openshift.io/secrets/",
                                          "/bootstrap/"};
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++)
        if (contains(v, vlen, markers[i], strlen(markers[i])))
            return 1;
    if (!contains(v, vlen, "\\u", 2))
        return 0;
    key_value kv;
    if (!parse_key_value(v, vlen, &kv))
        return 1;
    return kv.value_len >= 1 && kv.value[0] == '{';
}

/*
 * secrets.is_k8s_candidate() on a `key` bucket value, for dump with the "etcd"
 * member: a value that is no clean KeyValue, a KeyValue.value that starts
 * with k8s.MAGIC, k8s.ENC_PREFIX or "{" (a Kubernetes object: only Python
 * decodes it into the "k8s" member), or a KeyValue that may hold a secret
 * (k8s_maybe_secret: only Python masks).  1 means "hand it back".  Any other
 * record, /registry/ key or not, gets no "k8s" member and is C's to write.
 */
static int k8s_candidate(const unsigned char *v, uint64_t vlen)
{
    key_value kv;
    if (!parse_key_value(v, vlen, &kv))
        return 1;
    if (kv.value_len >= 4 && memcmp(kv.value, "k8s\0", 4) == 0)
        return 1;
    if (kv.value_len >= 8 && memcmp(kv.value, "k8s:enc:", 8) == 0)
        return 1;
    if (kv.value_len >= 1 && kv.value[0] == '{')
        return 1;
    return k8s_maybe_secret(v, vlen);
}

/* boltfix.resident.BIG_VALUE: a record with a value this big goes to Python */
#define BIG_VALUE (1ULL << 20)

/* the line's fixed pieces, all from record.py (c_pieces) */
enum { PRE, MID, KEY_NOTE, VALUE_NOTE, TAIL_HEAD, TAIL_END, NPIECES };

/*
 * The first `count` records of one leaf as JSON lines into `s`.  Every
 * element is checked against its page run (the file may change between
 * the passes).  Returns 1 when a record needs Python (the sink is then
 * left as it was), 0 when done, -1 with an error set.
 */
static int leaf_lines(const leaf_ref *lf, uint32_t count, const Py_buffer *pc, int automatic,
                      int etcd_key, sink *s)
{
    const size_t start = s->n;
    for (uint32_t j = 0; j < count; j++) {
        const unsigned char *key, *value;
        uint64_t ksize, vsize;
        if (leaf_record(lf, j, &key, &ksize, &value, &vsize) < 0)
            return -1;
        if (vsize >= BIG_VALUE)
            goto python; /* written in pieces (boltfix.bigrecord), never whole */
        const int kk = automatic ? auto_kind(key, ksize) : AS_HEX;
        const int vk = automatic ? auto_kind(value, vsize) : AS_HEX;
        if (kk == AS_PYTHON || vk == AS_PYTHON)
            goto python;
        if (etcd_key == 1 && k8s_candidate(value, vsize))
            goto python;
        if (etcd_key == 2 && k8s_maybe_secret(value, vsize))
            goto python;
        put_buf(s, &pc[PRE]);
        put_field(s, key, ksize, kk, automatic, &pc[KEY_NOTE]);
        put_buf(s, &pc[MID]);
        put_field(s, value, vsize, vk, automatic, &pc[VALUE_NOTE]);
        put_buf(s, &pc[TAIL_HEAD]);
        put_u64(s, lf->pgid);
        put_buf(s, &pc[TAIL_END]);
        if (etcd_key == 1) {
            if (!put_etcd_key_record(s, key, ksize, value, vsize))
                goto python;
            put_lit(s, "}\n");
        }
    }
    return 0;
python:
    s->n = start;
    return 1;
}

PyDoc_STRVAR(jsonl_doc,
"jsonl(buf, page_size, leaves, start, pieces, automatic, etcd_key, budget, max_records)\n"
"-> (data, next, records, python)\n\n"
"The dump's live JSONL lines for leaves[start:] from advance().  A record is\n"
"pre + key + mid + value + tail_head + page + tail_end, `pieces` being those\n"
"six (pre, mid, key_note, value_note, tail_head, tail_end); a key or value\n"
"is \"hex\", or with `automatic` (dump's auto encoding) \"text\" when it is\n"
"printable ASCII, else \"hex\" followed by its note.  With `etcd_key` 1\n"
"(etcd's `key` bucket) tail_end opens the \"etcd\" member and C writes the\n"
"decoded record and closes the line, and a record that may hold a Kubernetes\n"
"object or a secret (secrets.is_k8s_candidate) is handed back; with 2 (the `key`\n"
"bucket without the \"etcd\" member) one that may hold a secret\n"
"(secrets.QUICK_MARKERS) is.  Stops after the leaf that brings the\n"
"output to `budget` bytes, at `max_records` records (-1: no limit), or\n"
"before a leaf with a record only Python can write (non-ASCII text, an\n"
"unusual etcd record): then `python` is True and leaves[next] is that leaf.");

static PyObject *jsonl(PyObject *self, PyObject *args)
{
    PyObject *bufobj, *leaves, *pieces;
    Py_ssize_t start, budget, max_records;
    int automatic, etcd_key;
    unsigned long long ps;
    if (!PyArg_ParseTuple(args, "OKO!nO!pinn:jsonl", &bufobj, &ps, &PyList_Type, &leaves, &start,
                          &PyTuple_Type, &pieces, &automatic, &etcd_key, &budget, &max_records))
        return NULL;
    if (ps < 512) {
        PyErr_SetString(PyExc_ValueError, "page size below 512");
        return NULL;
    }
    if (PyTuple_GET_SIZE(pieces) != NPIECES) {
        PyErr_SetString(PyExc_ValueError, "pieces must be 6 bytes objects");
        return NULL;
    }
    Py_buffer pc[NPIECES], buf;
    int got = 0;
    PyObject *result = NULL, *data = NULL;
    for (; got < NPIECES; got++)
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(pieces, got), &pc[got], PyBUF_SIMPLE) < 0)
            goto release;
    if (get_buffer(bufobj, &buf, 0, "buf") < 0)
        goto release;
    const Py_ssize_t nleaves = PyList_GET_SIZE(leaves);
    if (start < 0)
        start = 0;

    /* pass 1: how far to go and how many bytes it takes */
    sink s = {NULL, 0, 0, 0};
    Py_ssize_t i = start, records = 0;
    leaf_ref lf;
    uint32_t count;
    int python = 0;
    /* at least one leaf per call, whatever the budget: the caller loops */
    for (; i < nleaves && (i == start || s.n < (size_t)budget); i++) {
        if (max_records >= 0 && records >= max_records)
            break;
        if (leaf_at(leaves, i, &buf, ps, &lf) < 0)
            goto done;
        count = lf.count;
        if (max_records >= 0 && records + (Py_ssize_t)count > max_records)
            count = (uint32_t)(max_records - records);
        const int rc = leaf_lines(&lf, count, pc, automatic, etcd_key, &s);
        if (rc < 0)
            goto done;
        if (rc > 0) {
            python = 1;
            break;
        }
        records += count;
    }
    const Py_ssize_t stop = i;
    data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)s.n);
    if (!data)
        goto done;
    /* pass 2: write them */
    sink w = {(unsigned char *)PyBytes_AS_STRING(data), 0, s.n, 0};
    Py_ssize_t left = max_records;
    for (i = start; i < stop; i++) {
        if (leaf_at(leaves, i, &buf, ps, &lf) < 0)
            goto done;
        count = lf.count;
        if (left >= 0 && (Py_ssize_t)count > left)
            count = (uint32_t)left;
        const int rc = leaf_lines(&lf, count, pc, automatic, etcd_key, &w);
        if (rc < 0)
            goto done;
        if (rc > 0 || w.overflow)
            break;
        if (left >= 0)
            left -= count;
    }
    if (w.overflow || w.n != s.n) {
        PyErr_SetString(PyExc_ValueError, "the file changed while it was read");
        goto done;
    }
    result = Py_BuildValue("(OnnO)", data, stop, records, python ? Py_True : Py_False);
done:
    Py_XDECREF(data);
    PyBuffer_Release(&buf);
release:
    while (got-- > 0)
        PyBuffer_Release(&pc[got]);
    return result;
}

PyDoc_STRVAR(etcd_key_suspects_doc,
"etcd_key_suspects(buf, page_size, leaves) -> [index, ...]\n\n"
"Indexes of the leaves (from advance(), of etcd's `key` bucket) holding a\n"
"record that etcd.check_key_record() may have something to say about;\n"
"every record of the other leaves is certainly clean.");

static PyObject *etcd_key_suspects(PyObject *self, PyObject *args)
{
    PyObject *leaves;
    unsigned long long ps;
    Py_buffer buf;
    if (leaves_args(args, "OKO!:etcd_key_suspects", &buf, &ps, &leaves) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(leaves); i++) {
        leaf_ref lf;
        int clean = leaf_at(leaves, i, &buf, ps, &lf) == 0;
        for (uint32_t j = 0; clean && j < lf.count; j++) {
            const unsigned char *key, *value;
            uint64_t ksize, vsize;
            clean = leaf_record(&lf, j, &key, &ksize, &value, &vsize) == 0 &&
                    etcd_key_record_clean(key, ksize, value, vsize);
        }
        if (PyErr_Occurred()) {
            Py_CLEAR(out);
            break;
        }
        if (!clean) {
            PyObject *n = PyLong_FromSsize_t(i);
            if (!n || PyList_Append(out, n) < 0)
                Py_CLEAR(out);
            Py_XDECREF(n);
        }
    }
    PyBuffer_Release(&buf);
    return out;
}

PyDoc_STRVAR(etcd_revision_stats_doc,
"etcd_revision_stats(buf, page_size, leaves) -> (revisions, tombstones, first, last)\n\n"
"What inspect's etcd facts count over leaves of etcd's `key` bucket: keys\n"
"that are revisions (etcdkeys.decode_revision), how many are tombstones, and the\n"
"first and last one's main revision as int64 (None when there is none).");

static PyObject *etcd_revision_stats(PyObject *self, PyObject *args)
{
    PyObject *leaves;
    unsigned long long ps;
    Py_buffer buf;
    if (leaves_args(args, "OKO!:etcd_revision_stats", &buf, &ps, &leaves) < 0)
        return NULL;
    unsigned long long revisions = 0, tombstones = 0;
    long long first = 0, last = 0;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(leaves); i++) {
        leaf_ref lf;
        if (leaf_at(leaves, i, &buf, ps, &lf) < 0)
            goto done;
        for (uint32_t j = 0; j < lf.count; j++) {
            const unsigned char *key, *value;
            uint64_t ksize, vsize;
            if (leaf_record(&lf, j, &key, &ksize, &value, &vsize) < 0)
                goto done;
            const int tombstone = revision_kind(key, ksize);
            if (tombstone < 0)
                continue;
            const long long main_rev = (long long)be64(key);
            if (!revisions)
                first = main_rev;
            last = main_rev;
            revisions++;
            tombstones += (unsigned)tombstone;
        }
    }
    if (revisions)
        result = Py_BuildValue("(KKLL)", revisions, tombstones, first, last);
    else
        result = Py_BuildValue("(KKOO)", revisions, tombstones, Py_None, Py_None);
done:
    PyBuffer_Release(&buf);
    return result;
}

PyDoc_STRVAR(etcd_key_record_clean_doc,
"etcd_key_record_clean(key, value) -> bool\n\n"
"True when etcd.check_key_record(key, value) certainly returns [] (the test\n"
"of etcd_key_suspects for one record).");

static PyObject *py_etcd_key_record_clean(PyObject *self, PyObject *args)
{
    Py_buffer k, v;
    if (!PyArg_ParseTuple(args, "y*y*:etcd_key_record_clean", &k, &v))
        return NULL;
    const int clean = etcd_key_record_clean(k.buf, (uint64_t)k.len, v.buf, (uint64_t)v.len);
    PyBuffer_Release(&k);
    PyBuffer_Release(&v);
    return PyBool_FromLong(clean);
}

/* ------------------------------------------------------------ leaf copy */
#define MAX_KEY_SIZE 32768u
#define MAX_VALUE_SIZE ((1u << 31) - 2)

/* writer.copyable_leaf: the page's size (header + elements + data) when it
 * is laid out exactly as node.write lays out its records, else 0 */
static uint64_t copyable_size(const leaf_ref *lf, uint64_t off, key_ref last, key_ref *first,
                              key_ref *final)
{
    if (!lf->count)
        return 0;
    uint64_t data = lf->floor;
    for (uint32_t j = 0; j < lf->count; j++) {
        const uint64_t eoff = lf->base + (uint64_t)ELEMENT_SIZE * j;
        const unsigned char *e = lf->map + eoff;
        const uint32_t ksize = le32(e + 8), vsize = le32(e + 12);
        if (le32(e) || eoff + le32(e + 4) != data || !ksize || ksize > MAX_KEY_SIZE ||
            vsize > MAX_VALUE_SIZE)
            return 0;
        if (data + ksize + vsize > lf->end)
            return 0;
        if (j == 0) {
            first->p = lf->map + data;
            first->n = ksize;
        }
        final->p = lf->map + data;
        final->n = ksize;
        data += (uint64_t)ksize + vsize;
    }
    if (last.p && key_cmp(*first, last) <= 0)
        return 0;
    return data - off;
}

PyDoc_STRVAR(leaf_copy_doc,
"leaf_copy(buf, page_size, leaves, last, out=None, max_bytes=-1)\n"
"-> (pages, [(first, npages)], records, last)\n\n"
"writer._copy_leaves in C: the longest prefix of `leaves` ((pgid, count, end)\n"
"of leaf pages the walk took whole) that writer.copyable_leaf accepts, each\n"
"first key after the previous page's last key (`last`: bytes or None), as a\n"
"bytearray of fresh pages (header id 0, overflow as the data needs, the\n"
"last page's tail zeroed), their first keys and page counts, the records\n"
"copied and the last key.  `out`, a bytearray, is resized and filled instead\n"
"of a new one (no fresh memory to fault in on every call).  The prefix stops\n"
"before the page that would bring `pages` past `max_bytes` (a page bigger\n"
"than that is never taken).");

static PyObject *leaf_copy(PyObject *self, PyObject *args)
{
    PyObject *bufobj, *leaves, *lastobj, *outobj = Py_None;
    unsigned long long ps, max_bytes = (unsigned long long)-1;
    Py_buffer buf;
    key_ref last;
    if (!PyArg_ParseTuple(args, "OKO!O|OK:leaf_copy", &bufobj, &ps, &PyList_Type, &leaves, &lastobj,
                          &outobj, &max_bytes))
        return NULL;
    if (outobj != Py_None && !PyByteArray_Check(outobj)) {
        PyErr_SetString(PyExc_TypeError, "out must be a bytearray or None");
        return NULL;
    }
    if (ps < 512) {
        PyErr_SetString(PyExc_ValueError, "page size below 512");
        return NULL;
    }
    if (!as_key(lastobj, &last)) {
        PyErr_SetString(PyExc_TypeError, "last must be bytes or None");
        return NULL;
    }
    if (get_buffer(bufobj, &buf, 0, "buf") < 0)
        return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(leaves);
    uint64_t *sizes = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    key_ref *firsts = PyMem_Malloc(sizeof(key_ref) * (size_t)(n ? n : 1));
    PyObject *result = NULL, *blob = NULL, *list = NULL;
    if (!sizes || !firsts) {
        PyErr_NoMemory();
        goto done;
    }
    /* pass 1: which pages, how big (nothing allocated per page yet) */
    Py_ssize_t taken = 0;
    uint64_t total = 0, records = 0;
    key_ref prev = last;
    for (; taken < n; taken++) {
        leaf_ref lf;
        key_ref first, final;
        if (leaf_at(leaves, taken, &buf, ps, &lf) < 0)
            goto done;
        const uint64_t size = copyable_size(&lf, lf.pgid * ps, prev, &first, &final);
        if (!size || (size + ps - 1) / ps * ps > max_bytes - total)
            break;
        sizes[taken] = size;
        firsts[taken] = first;
        total += (size + ps - 1) / ps * ps;
        records += lf.count;
        prev = final;
    }
    if (outobj != Py_None) {
        if (PyByteArray_Resize(outobj, (Py_ssize_t)total) < 0)
            goto done;
        Py_INCREF(outobj);
        blob = outobj;
    } else {
        blob = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
    }
    list = PyList_New(taken);
    if (!blob || !list)
        goto done;
    /* pass 2: the pages themselves */
    unsigned char *dst = (unsigned char *)PyByteArray_AS_STRING(blob);
    for (Py_ssize_t i = 0; i < taken; i++) {
        leaf_ref lf;
        if (leaf_at(leaves, i, &buf, ps, &lf) < 0)
            goto done;
        const uint64_t size = sizes[i], npages = (size + ps - 1) / ps;
        if (lf.pgid * ps + size > lf.end)
            goto done_changed;
        memset(dst, 0, PAGE_HEADER_SIZE);
        dst[8] = LEAF_PAGE_FLAG;
        dst[10] = (unsigned char)(lf.count & 0xff);
        dst[11] = (unsigned char)(lf.count >> 8);
        const uint32_t ovf = (uint32_t)(npages - 1);
        for (int b = 0; b < 4; b++)
            dst[12 + b] = (unsigned char)(ovf >> (8 * b));
        memcpy(dst + PAGE_HEADER_SIZE, lf.map + lf.base, (size_t)(size - PAGE_HEADER_SIZE));
        memset(dst + size, 0, (size_t)(npages * ps - size));
        PyObject *item = Py_BuildValue("(y#K)", (const char *)firsts[i].p, firsts[i].n,
                                       (unsigned long long)npages);
        if (!item)
            goto done;
        PyList_SET_ITEM(list, i, item);
        dst += npages * ps;
    }
    {
        PyObject *lastkey = prev.p ? PyBytes_FromStringAndSize((const char *)prev.p, prev.n)
                                   : (Py_INCREF(Py_None), Py_None);
        if (lastkey)
            result = Py_BuildValue("(OOKN)", blob, list, (unsigned long long)records, lastkey);
    }
    goto done;
done_changed:
    changed(0);
done:
    Py_XDECREF(blob);
    Py_XDECREF(list);
    PyMem_Free(sizes);
    PyMem_Free(firsts);
    PyBuffer_Release(&buf);
    return result;
}

/* ------------------------------------------------------------ inline runs */
/* leaves.canonical_inline: the records of an inline bucket value laid out
 * exactly as BoltWriter.end_bucket (bbolt's bucket.write) lays one out, else
 * -1.  Bucket header: root u64 (0) | sequence u64; page header: id (0) |
 * flags (leaf) | count | overflow (0); elements of flags 0 whose key and
 * value follow the elements back to back, keys ascending, filling the value;
 * at most inline_max bytes of page. */
static long canonical_inline(const unsigned char *v, uint64_t n, uint64_t inline_max,
                             uint64_t max_key)
{
    if (n < 32 || n - 16 > inline_max)
        return -1;
    if (le64(v) || le64(v + 16) || le16(v + 24) != LEAF_PAGE_FLAG || le32(v + 28))
        return -1;
    const uint32_t count = le16(v + 26);
    uint64_t data = 32 + (uint64_t)ELEMENT_SIZE * count;
    if (data > n)
        return -1;
    key_ref prev = {NULL, 0};
    for (uint32_t i = 0; i < count; i++) {
        const uint64_t eoff = 32 + (uint64_t)ELEMENT_SIZE * i;
        const unsigned char *e = v + eoff;
        const uint32_t ksize = le32(e + 8), vsize = le32(e + 12);
        if (le32(e) || eoff + le32(e + 4) != data || !ksize || ksize > max_key ||
            data + ksize + vsize > n)
            return -1;
        const key_ref key = {v + data, ksize};
        if (prev.p && key_cmp(key, prev) <= 0)
            return -1;
        prev = key;
        data += (uint64_t)ksize + vsize;
    }
    return data == n ? (long)count : -1;
}

PyDoc_STRVAR(inline_run_doc,
"inline_run(flags, keys, values, start, inline_max, max_key) -> (stop, counts)\n\n"
"leaves.inline_run in C: the run of elements start:stop of a page's columns\n"
"(lists or tuples) that are bucket entries (flags exactly BUCKET_LEAF_FLAG,\n"
"names of at most max_key bytes) whose values are canonical inline buckets,\n"
"and the record count of each.");

static PyObject *inline_run(PyObject *self, PyObject *args)
{
    PyObject *flags_o, *keys_o, *values_o;
    Py_ssize_t start;
    unsigned long long inline_max, max_key;
    if (!PyArg_ParseTuple(args, "OOOnKK:inline_run", &flags_o, &keys_o, &values_o, &start,
                          &inline_max, &max_key))
        return NULL;
    if (start < 0) {
        PyErr_SetString(PyExc_IndexError, "inline_run: start must not be negative");
        return NULL;
    }
    PyObject *flags = PySequence_Fast(flags_o, "flags must be a sequence");
    PyObject *keys = flags ? PySequence_Fast(keys_o, "keys must be a sequence") : NULL;
    PyObject *values = keys ? PySequence_Fast(values_o, "values must be a sequence") : NULL;
    PyObject *counts = values ? PyList_New(0) : NULL;
    PyObject *result = NULL;
    if (!counts)
        goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(flags);
    if (PySequence_Fast_GET_SIZE(keys) < n)
        n = PySequence_Fast_GET_SIZE(keys);
    if (PySequence_Fast_GET_SIZE(values) < n)
        n = PySequence_Fast_GET_SIZE(values);
    for (Py_ssize_t i = start; i < n; i++) {
        PyObject *f = PySequence_Fast_GET_ITEM(flags, i);
        PyObject *k = PySequence_Fast_GET_ITEM(keys, i);
        if (!PyLong_Check(f) || PyLong_AsLong(f) != BUCKET_LEAF_FLAG || !PyBytes_Check(k) ||
            (unsigned long long)PyBytes_GET_SIZE(k) > max_key)
            break;
        Py_buffer vb;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(values, i), &vb, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            break;
        }
        const long c = canonical_inline(vb.buf, (uint64_t)vb.len, inline_max, max_key);
        PyBuffer_Release(&vb);
        if (c < 0)
            break;
        PyObject *co = PyLong_FromLong(c);
        if (!co || PyList_Append(counts, co) < 0) {
            Py_XDECREF(co);
            goto done;
        }
        Py_DECREF(co);
    }
    if (PyErr_Occurred())
        goto done;
    result = Py_BuildValue("nO", start + PyList_GET_SIZE(counts), counts);
done:
    Py_XDECREF(counts);
    Py_XDECREF(values);
    Py_XDECREF(keys);
    Py_XDECREF(flags);
    return result;
}

/* ------------------------------------------------------------ dump of inline runs */
enum { RUN_PRE, RUN_CHILD, RUN_KEY_NOTE, RUN_VALUE_NOTE, RUN_NPIECES };

/* one run's lines into `s`: 1 done, 0 a name Python must write (its path
 * needs "path_encoding", or Python decides its text), -1 the file changed */
static int run_lines(PyObject *names, PyObject *values, const Py_buffer *pc, int automatic,
                     uint64_t page, uint64_t inline_max, sink *s)
{
    const Py_ssize_t n = PyList_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        if (!PyBytes_Check(name))
            return 0;
        const unsigned char *np = (const unsigned char *)PyBytes_AS_STRING(name);
        const uint64_t nn = (uint64_t)PyBytes_GET_SIZE(name);
        const int nk = automatic ? auto_kind(np, nn) : AS_HEX;
        if (nk == AS_PYTHON || (automatic && nk == AS_HEX))
            return 0; /* a path element in hex: path_encoding, Python's rule */
        Py_buffer vb;
        if (PyObject_GetBuffer(PyList_GET_ITEM(values, i), &vb, PyBUF_SIMPLE) < 0)
            return -1;
        const unsigned char *v = vb.buf;
        const uint64_t vn = (uint64_t)vb.len;
        const long count = canonical_inline(v, vn, inline_max, MAX_KEY_SIZE);
        if (count < 0) {
            PyBuffer_Release(&vb);
            PyErr_SetString(PyExc_ValueError, "the file changed while it was read");
            return -1;
        }
        /* the entry: record.live_bucket_line */
        put_buf(s, &pc[RUN_PRE]);
        put_field(s, np, nn, nk, automatic, &pc[RUN_KEY_NOTE]);
        put_lit(s, ",\"value\":null,\"type\":\"bucket\",\"sequence\":");
        put_u64(s, le64(v + 8));
        put_lit(s, ",\"page\":");
        put_u64(s, page);
        put_lit(s, ",\"state\":\"live\"}\n");
        /* its records: record.live_kv_pieces under the path one name longer */
        uint64_t data = 32 + (uint64_t)ELEMENT_SIZE * (uint64_t)count;
        for (long j = 0; j < count; j++) {
            const unsigned char *e = v + 32 + (uint64_t)ELEMENT_SIZE * (uint64_t)j;
            const uint64_t ks = le32(e + 8), vs = le32(e + 12);
            const unsigned char *key = v + data, *val = v + data + ks;
            data += ks + vs;
            const int kk = automatic ? auto_kind(key, ks) : AS_HEX;
            const int vk = automatic ? auto_kind(val, vs) : AS_HEX;
            if (kk == AS_PYTHON || vk == AS_PYTHON) {
                PyBuffer_Release(&vb);
                return 0;
            }
            put_buf(s, &pc[RUN_CHILD]);
            put_field(s, np, nn, nk, 0, NULL);
            put_lit(s, "],\"key\":");
            put_field(s, key, ks, kk, automatic, &pc[RUN_KEY_NOTE]);
            put_lit(s, ",\"value\":");
            put_field(s, val, vs, vk, automatic, &pc[RUN_VALUE_NOTE]);
            put_lit(s, ",\"type\":\"kv\",\"page\":");
            put_u64(s, page);
            put_lit(s, ",\"state\":\"live\"}\n");
        }
        PyBuffer_Release(&vb);
    }
    return 1;
}

PyDoc_STRVAR(jsonl_run_doc,
"jsonl_run(names, values, pieces, automatic, page, inline_max) -> bytes or None\n\n"
"The dump's live JSONL lines of a walk.InlineRun (names and values lists):\n"
"each entry's line (record.live_bucket_line), then its records' lines under\n"
"the path one name longer (record.live_kv_pieces).  `pieces`: (pre, child,\n"
"key_note, value_note): pre the entry line's opening (path + ',\"key\":'),\n"
"child the path's JSON without its closing ']' and with a ',' (the parent's\n"
"path has no path_encoding).  None when a name needs path_encoding or a key\n"
"or value is text only Python can judge; ValueError when a value is no\n"
"longer a canonical inline bucket (the file changed).");

static PyObject *jsonl_run(PyObject *self, PyObject *args)
{
    PyObject *names, *values, *pieces;
    int automatic;
    unsigned long long page, inline_max;
    if (!PyArg_ParseTuple(args, "O!O!O!pKK:jsonl_run", &PyList_Type, &names, &PyList_Type,
                          &values, &PyTuple_Type, &pieces, &automatic, &page, &inline_max))
        return NULL;
    if (PyList_GET_SIZE(values) != PyList_GET_SIZE(names) ||
        PyTuple_GET_SIZE(pieces) != RUN_NPIECES) {
        PyErr_SetString(PyExc_TypeError, "jsonl_run: names and values differ, or not 4 pieces");
        return NULL;
    }
    Py_buffer pc[RUN_NPIECES];
    int got = 0;
    PyObject *result = NULL;
    for (; got < RUN_NPIECES; got++)
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(pieces, got), &pc[got], PyBUF_SIMPLE) < 0)
            goto release;
    sink s = {NULL, 0, 0, 0};
    int rc = run_lines(names, values, pc, automatic, page, inline_max, &s);
    if (rc <= 0) {
        if (rc == 0)
            result = Py_NewRef(Py_None);
        goto release;
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)s.n);
    if (!data)
        goto release;
    sink w = {(unsigned char *)PyBytes_AS_STRING(data), 0, s.n, 0};
    rc = run_lines(names, values, pc, automatic, page, inline_max, &w);
    if (rc <= 0 || w.overflow || w.n != s.n) {
        Py_DECREF(data);
        if (rc >= 0)
            PyErr_SetString(PyExc_ValueError, "the file changed while it was read");
        goto release;
    }
    result = data;
release:
    while (got-- > 0)
        PyBuffer_Release(&pc[got]);
    return result;
}

static PyMethodDef methods[] = {
    {"leaf_copy", leaf_copy, METH_VARARGS, leaf_copy_doc},
    {"advance", advance, METH_VARARGS, advance_doc},
    {"inline_run", inline_run, METH_VARARGS, inline_run_doc},
    {"jsonl", jsonl, METH_VARARGS, jsonl_doc},
    {"jsonl_run", jsonl_run, METH_VARARGS, jsonl_run_doc},
    {"etcd_key_suspects", etcd_key_suspects, METH_VARARGS, etcd_key_suspects_doc},
    {"etcd_revision_stats", etcd_revision_stats, METH_VARARGS, etcd_revision_stats_doc},
    {"etcd_key_record_clean", py_etcd_key_record_clean, METH_VARARGS, etcd_key_record_clean_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "boltfix._speedups",
    "The walk's clean path and the JSONL writer in C (see walk.py, record.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
#if defined(HAVE_AVX2_PATH)
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2") && !getenv("BOLTFIX_NO_AVX2");
#endif
    return PyModule_Create(&module);
}
