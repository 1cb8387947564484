/* Prophesee Gen1 Event2D records -> EVENT_DTYPE records, compiled at first use (gen1.py).
 *
 * A record on disk is 8 bytes, little-endian: the timestamp (u32, microseconds), then a word with x in bits
 * 0-13, y in bits 14-27 and the polarity in bit 28 (bits 29-31 belong to no field); read whole as one 64-bit
 * word w, x sits at bit 32, y at bit 46 and p at bit 60. An output record is EVENT_DTYPE's 13 packed bytes:
 * t (i64), x (u16), y (u16), p (u8). Records may start at any byte (the header has any length): loads go
 * through memcpy.
 *
 * The checks are gen1.py's NumPy path's, in the same order at one event: the timestamp against the previous
 * one (order), then x against the width, then y against the height. The first event that fails one stops
 * the pass; its index comes back and *what says which check failed, so Python raises the same message.
 *
 * The records go in blocks of BLOCK that stay in L1: first a branch-free check of the whole block (it
 * vectorises), then, only where it fails, a scan for the first bad event, then the block's output. With SSE2
 * (every x86-64) two records are built at a time as 16 bytes each, t | x, y, p, and stored at their 13-byte
 * places in order, each store's 3 surplus zero bytes overwritten by the next record: 2.5x the speed of two
 * scalar stores per record.
 */

#include <stdint.h>
#include <string.h>
/* DAT_SCALAR: the portable path only, where SSE2 exists too (the tests check it against the SSE2 one). */
#if defined(__SSE2__) && !defined(DAT_SCALAR)
#define DAT_SSE2 1
#include <emmintrin.h>
#endif

#define DAT_CHECK_ORDER 1  /* timestamps must not go backwards (from *last on) */
#define DAT_CHECK_COORDS 2 /* x < width and y < height */

enum { DAT_OK = 0, DAT_BACKWARDS = 1, DAT_X_OUTSIDE = 2, DAT_Y_OUTSIDE = 3 };

#define BLOCK 1024
#define OUT_SIZE 13
#define COORD_MASK 0x3FFFu
#define REC_T(w) ((int64_t)(uint32_t)(w))
#define REC_X(w) ((int64_t)(((w) >> 32) & COORD_MASK))
#define REC_Y(w) ((int64_t)(((w) >> 46) & COORD_MASK))

static inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void store64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

/* Whether record 1 .. m of the block fails a check (record 0 is checked by the caller, against *last). */
static int block_fails(const uint8_t* rec, int64_t m, int order, int coords, int64_t width, int64_t height) {
    const uint32_t check_order = (uint32_t)order, check_coords = (uint32_t)coords;
    const uint32_t w_limit = (uint32_t)width, h_limit = (uint32_t)height;
    uint32_t bad = 0;
    for (int64_t i = 1; i < m; i++) {
        const uint64_t w = load64(rec + 8 * i), before = load64(rec + 8 * (i - 1));
        bad |= (check_order & ((uint32_t)w < (uint32_t)before)) |
               (check_coords & (((uint32_t)REC_X(w) >= w_limit) | ((uint32_t)REC_Y(w) >= h_limit)));
    }
    return bad != 0;
}

/* The index of the first record of rec[0 .. m] that fails a check, with *what and *prev set (-1: none). */
static int64_t first_bad(const uint8_t* rec, int64_t m, int order, int coords, int64_t width, int64_t height,
                         int64_t* prev, int32_t* what) {
    for (int64_t i = 0; i < m; i++) {
        const uint64_t w = load64(rec + 8 * i);
        const int back = order && REC_T(w) < *prev;
        const int x_out = coords && REC_X(w) >= width, y_out = coords && REC_Y(w) >= height;
        if (back || x_out || y_out) {
            *what = back ? DAT_BACKWARDS : (x_out ? DAT_X_OUTSIDE : DAT_Y_OUTSIDE);
            return i;
        }
        *prev = REC_T(w);
    }
    return -1;
}

/* Write records rec[0 .. m] to out, exactly 13 * m bytes. */
static void put_records(const uint8_t* rec, int64_t m, uint8_t* out) {
    int64_t i = 0;
#ifdef DAT_SSE2
    /* t in the low 64 bits; x, y, p as bytes 8-12: x | y << 16 | p << 32 (moved there from w in one shift
     * each). The last record of the call takes the exact path below: its store has no next record. */
    const __m128i t_mask = _mm_set1_epi64x(0xFFFFFFFF), x_mask = _mm_set1_epi64x(COORD_MASK);
    const __m128i y_mask = _mm_set1_epi64x((int64_t)COORD_MASK << 16), p_mask = _mm_set1_epi64x((int64_t)1 << 32);
    for (; i + 2 < m; i += 2) {
        const __m128i w = _mm_loadu_si128((const __m128i*)(rec + 8 * i));
        const __m128i t = _mm_and_si128(w, t_mask);
        const __m128i xyp = _mm_or_si128(
            _mm_or_si128(_mm_and_si128(_mm_srli_epi64(w, 32), x_mask), _mm_and_si128(_mm_srli_epi64(w, 30), y_mask)),
            _mm_and_si128(_mm_srli_epi64(w, 28), p_mask));
        _mm_storeu_si128((__m128i*)(out + OUT_SIZE * i), _mm_unpacklo_epi64(t, xyp));
        _mm_storeu_si128((__m128i*)(out + OUT_SIZE * (i + 1)), _mm_unpackhi_epi64(t, xyp));
    }
#endif
    /* Two 8-byte stores: t at byte 0, then x << 24 | y << 40 | p << 56 at byte 5, which rewrites t's zero
     * bytes 5-7 with zeros (t < 2^32). */
    for (; i < m; i++) {
        const uint64_t w = load64(rec + 8 * i);
        store64(out + OUT_SIZE * i, (uint64_t)REC_T(w));
        store64(out + OUT_SIZE * i + 5, ((w >> 8) & ((uint64_t)COORD_MASK << 24)) |
                                            ((w >> 6) & ((uint64_t)COORD_MASK << 40)) | ((w >> 4) & ((uint64_t)1 << 56)));
    }
}

/* Decode records 0 .. n of `records` into `out` (NULL: only check) with the checks in `checks`; width and
 * height lie in 0 .. 2^14 (2^14: no limit). `*last` is the timestamp before record 0 (-1: none); on return it
 * is the last timestamp passed. Returns n when every record passes, else the index of the first that fails
 * (with *what set); the blocks before its block are written. */
int64_t dat_decode(const uint8_t* records, int64_t n, uint8_t* out, int32_t checks, int64_t width,
                   int64_t height, int64_t* last, int32_t* what) {
    const int order = (checks & DAT_CHECK_ORDER) != 0, coords = (checks & DAT_CHECK_COORDS) != 0;
    *what = DAT_OK;
    for (int64_t lo = 0; lo < n; lo += BLOCK) {
        const int64_t m = n - lo < BLOCK ? n - lo : BLOCK;
        const uint8_t* rec = records + 8 * lo;
        const uint64_t w0 = load64(rec);
        const int first_fails = (order && REC_T(w0) < *last) || (coords && (REC_X(w0) >= width || REC_Y(w0) >= height));
        if (first_fails || ((order || coords) && block_fails(rec, m, order, coords, width, height))) {
            const int64_t bad = first_bad(rec, m, order, coords, width, height, last, what);
            if (bad >= 0)
                return lo + bad;
        }
        *last = REC_T(load64(rec + 8 * (m - 1)));
        if (out)
            put_records(rec, m, out + OUT_SIZE * lo);
    }
    return n;
}
