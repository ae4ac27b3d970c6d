"""cffi (API mode) build of askr.front._nghttp2: a thin C layer over Debian's libnghttp2.

Why a C layer and not Python callbacks: nghttp2 calls back once per header field and per frame,
and each C -> Python transition costs about as much as the C work of a whole request. Here every
callback is C; it records events into flat arrays that Python reads once per receive_data, and
each stream's response body waits in a C buffer that nghttp2's data provider reads from, so
data_to_send() enters Python for nothing. Built by setup.py (build_nghttp2_codec) against
libnghttp2-dev; run this file directly to build in place for development.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cffi

CDEF = """
#define NGHTTP2_ERR_FLOODED ...
#define NGHTTP2_ERR_STREAM_CLOSED ...
#define NGHTTP2_ERR_INVALID_ARGUMENT ...
#define NGHTTP2_ERR_DATA_EXIST ...
#define NGHTTP2_ERR_INVALID_HEADER_BLOCK ...
typedef struct {
    int64_t *ev; size_t nev;
    uint8_t *buf; size_t nbuf;
    uint32_t *lens; size_t nlens;
    uint8_t *out; size_t nout;
    int consumed;
    int lib_goaway; uint32_t lib_goaway_code;
    int own_goaways;
    uint32_t max_header_bytes;
    ...;
} askr_h2;

askr_h2 *askr_h2_new(uint32_t max_concurrent_streams, uint32_t initial_window, uint32_t max_header_bytes,
                     int32_t connection_window, uint64_t reset_burst, uint64_t reset_rate,
                     size_t max_continuations);
void askr_h2_free(askr_h2 *s);
long askr_h2_recv(askr_h2 *s, const uint8_t *data, size_t len);
long askr_h2_send(askr_h2 *s);
int askr_h2_respond(askr_h2 *s, int32_t stream_id, const uint8_t *blob, size_t bloblen, size_t n, int mode,
                    const uint8_t *body, size_t bodylen);
long askr_h2_push(askr_h2 *s, int32_t stream_id, const uint8_t *data, size_t len, int end);
int askr_h2_reset(askr_h2 *s, int32_t stream_id, uint32_t error_code);
int askr_h2_goaway(askr_h2 *s, int32_t last_stream_id, uint32_t error_code, const uint8_t *debug,
                   size_t len, int terminate);
long askr_h2_pending(askr_h2 *s, int32_t stream_id);
int askr_h2_consume(askr_h2 *s, int32_t stream_id, size_t n);
int askr_h2_upgrade(askr_h2 *s, const uint8_t *settings, size_t len, int head_request);
int32_t askr_h2_remote_window(askr_h2 *s, int32_t stream_id);
uint32_t askr_h2_remote_setting(askr_h2 *s, int id);
int32_t askr_h2_last_proc(askr_h2 *s);
int askr_h2_want_read(askr_h2 *s);
int askr_h2_want_write(askr_h2 *s);
const char *nghttp2_strerror(int lib_error_code);
"""

SOURCE = r"""
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

/* event kinds; each event is 6 int64: kind, stream_id, a, b, off, len */
enum { EV_REQUEST = 1, EV_TRAILERS, EV_DATA, EV_END, EV_RESET, EV_WINDOW, EV_SETTINGS, EV_GOAWAY };
#define EV_WORDS 6
#define SKIPPED_RANGES 8

struct askr_stream;

typedef struct {
    int64_t *ev; size_t nev, cap_ev;
    uint8_t *buf; size_t nbuf, cap_buf;      /* header fields and DATA of this batch */
    uint32_t *lens; size_t nlens, cap_lens;  /* name/value lengths, settings pairs */
    uint8_t *out; size_t nout, cap_out;      /* serialized frames not yet taken */
    int consumed;                            /* Python read the batch: clear before the next */
    int lib_goaway; uint32_t lib_goaway_code;
    int own_goaways;                         /* GOAWAYs we submitted and nghttp2 has not sent yet */
    uint32_t max_header_bytes;
    /* the header block being received (one at a time: CONTINUATION cannot interleave) */
    uint8_t *hdr; size_t nhdr, cap_hdr, nfields;
    size_t hsize; int hoversized;
    size_t data_in;                          /* DATA bytes delivered in this recv (connection window) */
    nghttp2_session *session;
    struct askr_stream *streams;
    /* client stream ids: the highest opened, and the ranges it skipped (implicitly closed) */
    int32_t max_client_sid;
    int32_t skipped[SKIPPED_RANGES][2]; size_t nskipped;
} askr_h2;

/* per stream the application knows about (nghttp2 stream user data) */
typedef struct askr_stream {
    struct askr_stream *prev, *next;       /* all of them: nghttp2_session_del does not call
                                              on_stream_close, so askr_h2_free frees what is left */
    uint8_t *data; size_t start, end, cap;   /* response body not yet taken by nghttp2 */
    int eof;        /* the body is complete: END_STREAM once drained */
    int finished;   /* the application ended or reset it: no close event */
    int remote_rst; /* closed by the peer's RST_STREAM */
} askr_stream;

void askr_h2_free(askr_h2 *s);

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q; *cap = n;
    return 0;
}

static askr_stream *new_stream(askr_h2 *s) {
    askr_stream *st = calloc(1, sizeof(askr_stream));
    if (!st) return NULL;
    st->next = s->streams;
    if (s->streams) s->streams->prev = st;
    s->streams = st;
    return st;
}

static void free_stream(askr_h2 *s, askr_stream *st) {
    if (st->prev) st->prev->next = st->next;
    else s->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    free(st->data);
    free(st);
}

static void prepare(askr_h2 *s) {
    if (s->consumed) { s->nev = s->nbuf = s->nlens = 0; s->consumed = 0; }
}

static int64_t *push_event(askr_h2 *s, int64_t kind, int64_t sid) {
    if (grow((void **)&s->ev, &s->cap_ev, (s->nev + 1) * EV_WORDS, sizeof(int64_t))) return NULL;
    int64_t *e = s->ev + s->nev * EV_WORDS;
    s->nev++;
    e[0] = kind; e[1] = sid; e[2] = e[3] = e[4] = e[5] = 0;
    return e;
}

static int add_bytes(askr_h2 *s, const uint8_t *p, size_t n) {
    if (grow((void **)&s->buf, &s->cap_buf, s->nbuf + n, 1)) return -1;
    memcpy(s->buf + s->nbuf, p, n);
    s->nbuf += n;
    return 0;
}

/* RFC 9113 5.1.1: HEADERS on a client stream id lower than one already used, that was never
   opened, is a connection error (PROTOCOL_ERROR). nghttp2 ignores such a block instead (it cannot
   tell a skipped id from a closed stream it forgot), so we remember the ids the client skipped. */
static int on_begin_frame(nghttp2_session *ss, const nghttp2_frame_hd *hd, void *ud) {
    askr_h2 *s = ud;
    int32_t sid = hd->stream_id;
    if (hd->type != NGHTTP2_HEADERS || !(sid & 1)) return 0;
    if (sid > s->max_client_sid) {
        if (sid > s->max_client_sid + 2) {
            size_t i = s->nskipped < SKIPPED_RANGES ? s->nskipped++ : (memmove(s->skipped, s->skipped + 1,
                sizeof(s->skipped[0]) * (SKIPPED_RANGES - 1)), SKIPPED_RANGES - 1);
            s->skipped[i][0] = s->max_client_sid + 2;
            s->skipped[i][1] = sid - 2;
        }
        s->max_client_sid = sid;
        return 0;
    }
    for (size_t i = 0; i < s->nskipped; i++) {
        if (sid >= s->skipped[i][0] && sid <= s->skipped[i][1]) {
            nghttp2_session_terminate_session(ss, NGHTTP2_PROTOCOL_ERROR);
            break;
        }
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *ss, const nghttp2_frame *f, void *ud) {
    askr_h2 *s = ud;
    s->nhdr = s->nfields = s->hsize = 0;
    s->hoversized = 0;
    return 0;
}

static int on_header(nghttp2_session *ss, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud) {
    askr_h2 *s = ud;
    /* nghttp2 does not bound a decoded header list itself (HPACK can expand ~4000x): we do, and
       say so instead of dropping the stream, so the caller can answer 431. */
    s->hsize += namelen + valuelen + 32;
    if (s->hsize > s->max_header_bytes) { s->hoversized = 1; return 0; }
    /* NUL-separated: nghttp2 has already rejected NUL in names and values (RFC 9113 8.2.1) */
    if (grow((void **)&s->hdr, &s->cap_hdr, s->nhdr + namelen + valuelen + 2, 1))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(s->hdr + s->nhdr, name, namelen);
    s->hdr[s->nhdr + namelen] = 0;
    memcpy(s->hdr + s->nhdr + namelen + 1, value, valuelen);
    s->hdr[s->nhdr + namelen + 1 + valuelen] = 0;
    s->nhdr += namelen + valuelen + 2;
    s->nfields++;
    return 0;
}

static int emit_headers(askr_h2 *s, int kind, int32_t sid, int end) {
    int64_t *e = push_event(s, kind, sid);
    if (!e) return -1;
    e[2] = end | (s->hoversized << 1);
    e[3] = (int64_t)s->nfields;
    e[4] = (int64_t)s->nbuf;
    e[5] = s->nhdr ? (int64_t)s->nhdr - 1 : 0;  /* without the last NUL: Python splits on NUL */
    return add_bytes(s, s->hdr, s->nhdr);
}

static int on_frame_recv(nghttp2_session *ss, const nghttp2_frame *f, void *ud) {
    askr_h2 *s = ud;
    int32_t sid = f->hd.stream_id;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    int64_t *e;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            askr_stream *st = new_stream(s);
            if (!st) return NGHTTP2_ERR_CALLBACK_FAILURE;
            if (nghttp2_session_set_stream_user_data(ss, sid, st)) { free_stream(s, st); break; }
            if (emit_headers(s, EV_REQUEST, sid, end)) return NGHTTP2_ERR_CALLBACK_FAILURE;
        } else if (nghttp2_session_get_stream_user_data(ss, sid)) {  /* trailers of a known request */
            if (emit_headers(s, EV_TRAILERS, sid, end)) return NGHTTP2_ERR_CALLBACK_FAILURE;
            if (end && !push_event(s, EV_END, sid)) return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    case NGHTTP2_DATA:
        if (end && nghttp2_session_get_stream_user_data(ss, sid) && !push_event(s, EV_END, sid))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    case NGHTTP2_RST_STREAM: {
        askr_stream *st = nghttp2_session_get_stream_user_data(ss, sid);
        if (st) st->remote_rst = 1;
        break;
    }
    case NGHTTP2_WINDOW_UPDATE:
        if (!(e = push_event(s, EV_WINDOW, sid))) return NGHTTP2_ERR_CALLBACK_FAILURE;
        e[2] = f->window_update.window_size_increment;
        break;
    case NGHTTP2_SETTINGS:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) break;
        if (!(e = push_event(s, EV_SETTINGS, 0))) return NGHTTP2_ERR_CALLBACK_FAILURE;
        e[3] = (int64_t)s->nlens;
        e[5] = (int64_t)f->settings.niv;
        if (grow((void **)&s->lens, &s->cap_lens, s->nlens + 2 * f->settings.niv, sizeof(uint32_t)))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        for (size_t i = 0; i < f->settings.niv; i++) {
            s->lens[s->nlens++] = (uint32_t)f->settings.iv[i].settings_id;
            s->lens[s->nlens++] = f->settings.iv[i].value;
        }
        break;
    case NGHTTP2_GOAWAY:
        if (!(e = push_event(s, EV_GOAWAY, 0))) return NGHTTP2_ERR_CALLBACK_FAILURE;
        e[2] = f->goaway.error_code;
        e[3] = f->goaway.last_stream_id;
        e[4] = (int64_t)s->nbuf;
        e[5] = (int64_t)f->goaway.opaque_data_len;
        if (add_bytes(s, f->goaway.opaque_data, f->goaway.opaque_data_len))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ss, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                         void *ud) {
    askr_h2 *s = ud;
    s->data_in += len;
    if (!nghttp2_session_get_stream_user_data(ss, sid)) {
        nghttp2_session_consume_stream(ss, sid, len);  /* nobody will: do not hold its window */
        return 0;
    }
    int64_t *e = s->nev ? s->ev + (s->nev - 1) * EV_WORDS : NULL;
    /* chunks of one stream that arrive back to back become one event */
    if (!(e && e[0] == EV_DATA && e[1] == sid && (size_t)(e[4] + e[5]) == s->nbuf)) {
        if (!(e = push_event(s, EV_DATA, sid))) return NGHTTP2_ERR_CALLBACK_FAILURE;
        e[4] = (int64_t)s->nbuf;
    }
    if (add_bytes(s, data, len)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    e[5] += (int64_t)len;
    return 0;
}

static int on_stream_close(nghttp2_session *ss, int32_t sid, uint32_t error_code, void *ud) {
    askr_h2 *s = ud;
    askr_stream *st = nghttp2_session_get_stream_user_data(ss, sid);
    if (!st) return 0;
    if (!st->finished) {  /* the application still counts on it: tell it the stream is gone */
        int64_t *e = push_event(s, EV_RESET, sid);
        if (e) { e[2] = error_code; e[3] = st->remote_rst; }
    }
    nghttp2_session_set_stream_user_data(ss, sid, NULL);
    free_stream(s, st);
    return 0;
}

static int on_frame_send(nghttp2_session *ss, const nghttp2_frame *f, void *ud) {
    askr_h2 *s = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        if (s->own_goaways > 0) s->own_goaways--;
        else { s->lib_goaway = 1; s->lib_goaway_code = f->goaway.error_code; }
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *ss, int32_t sid, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *ud) {
    askr_stream *st = source->ptr;
    size_t n = st->end - st->start;
    if (n > length) n = length;
    if (n) { memcpy(buf, st->data + st->start, n); st->start += n; }
    if (st->start == st->end) {
        st->start = st->end = 0;
        if (st->eof) *flags |= NGHTTP2_DATA_FLAG_EOF;
        else if (!n) return NGHTTP2_ERR_DEFERRED;  /* resumed by askr_h2_push */
    }
    return (ssize_t)n;
}

askr_h2 *askr_h2_new(uint32_t max_concurrent_streams, uint32_t initial_window, uint32_t max_header_bytes,
                     int32_t connection_window, uint64_t reset_burst, uint64_t reset_rate,
                     size_t max_continuations) {
    askr_h2 *s = calloc(1, sizeof(askr_h2));
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (!s) return NULL;
    s->max_header_bytes = max_header_bytes;
    if (nghttp2_session_callbacks_new(&cb)) { free(s); return NULL; }
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    if (nghttp2_option_new(&opt)) { nghttp2_session_callbacks_del(cb); free(s); return NULL; }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_stream_reset_rate_limit(opt, reset_burst, reset_rate);
    nghttp2_option_set_max_continuations(opt, max_continuations);
    int rv = nghttp2_session_server_new2(&s->session, cb, s, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv) { free(s); return NULL; }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, initial_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, max_header_bytes},
    };
    if (nghttp2_submit_settings(s->session, NGHTTP2_FLAG_NONE, iv, 3)
        || (connection_window > 65535
            && nghttp2_session_set_local_window_size(s->session, NGHTTP2_FLAG_NONE, 0, connection_window))) {
        askr_h2_free(s);
        return NULL;
    }
    return s;
}

void askr_h2_free(askr_h2 *s) {
    if (!s) return;
    nghttp2_session_del(s->session);
    while (s->streams) free_stream(s, s->streams);
    free(s->ev); free(s->buf); free(s->lens); free(s->out); free(s->hdr);
    free(s);
}

static long drain(askr_h2 *s) {
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(s->session, &p);
        if (n < 0) return n;
        if (n == 0) return 0;
        if (grow((void **)&s->out, &s->cap_out, s->nout + (size_t)n, 1)) return NGHTTP2_ERR_NOMEM;
        memcpy(s->out + s->nout, p, (size_t)n);
        s->nout += (size_t)n;
    }
}

/* Feed bytes, then serialize what nghttp2 queued in answer (ACKs, its own RST_STREAM/GOAWAY), so
   streams it resets and connection errors it detects are known when this returns. */
long askr_h2_recv(askr_h2 *s, const uint8_t *data, size_t len) {
    prepare(s);
    s->data_in = 0;
    ssize_t n = nghttp2_session_mem_recv(s->session, data, len);
    if (s->data_in) nghttp2_session_consume_connection(s->session, s->data_in);
    if (n < 0) return n;
    return drain(s);
}

long askr_h2_send(askr_h2 *s) {
    prepare(s);
    return drain(s);
}

/* mode 0: final headers, body follows (askr_h2_push); 1: final headers ending the stream; 2:
   informational (1xx) headers; 3: final headers, then body and END_STREAM. blob holds the n names
   and values separated by NUL: a NUL inside one shows as a wrong count and is refused. */
int askr_h2_respond(askr_h2 *s, int32_t sid, const uint8_t *blob, size_t bloblen, size_t n, int mode,
                    const uint8_t *body, size_t bodylen) {
    nghttp2_nv stack_nva[16];
    askr_stream *st = nghttp2_session_get_stream_user_data(s->session, sid);
    if (!st || st->finished) return NGHTTP2_ERR_STREAM_CLOSED;
    nghttp2_nv *nva = n <= 16 ? stack_nva : malloc(n * sizeof(nghttp2_nv));
    const uint8_t *p = blob, *end = blob + bloblen;
    int rv = 0;
    if (!nva) return NGHTTP2_ERR_NOMEM;
    for (size_t i = 0; i < 2 * n; i++) {
        const uint8_t *sep = p <= end ? memchr(p, 0, (size_t)(end - p)) : NULL;
        if (!sep) {
            if (i != 2 * n - 1 || p > end) { rv = NGHTTP2_ERR_INVALID_HEADER_BLOCK; break; }
            sep = end;
        } else if (i == 2 * n - 1) { rv = NGHTTP2_ERR_INVALID_HEADER_BLOCK; break; }
        if (i % 2 == 0) { nva[i / 2].name = (uint8_t *)p; nva[i / 2].namelen = (size_t)(sep - p); }
        else { nva[i / 2].value = (uint8_t *)p; nva[i / 2].valuelen = (size_t)(sep - p); }
        nva[i / 2].flags = NGHTTP2_NV_FLAG_NONE;  /* nghttp2 copies them */
        p = sep + 1;
    }
    if (rv) {
        /* refused above */
    } else if (mode == 2) rv = nghttp2_submit_headers(s->session, NGHTTP2_FLAG_NONE, sid, NULL, nva, n, NULL);
    else if (mode == 1) {
        rv = nghttp2_submit_response(s->session, sid, nva, n, NULL);
        if (!rv) st->finished = 1;
    } else {
        nghttp2_data_provider prd;
        prd.source.ptr = st;
        prd.read_callback = read_body;
        rv = nghttp2_submit_response(s->session, sid, nva, n, &prd);
        if (!rv && mode == 3) {
            if (bodylen) {
                if (grow((void **)&st->data, &st->cap, bodylen, 1)) rv = NGHTTP2_ERR_NOMEM;
                else { memcpy(st->data, body, bodylen); st->start = 0; st->end = bodylen; }
            }
            st->eof = st->finished = 1;
        }
    }
    if (nva != stack_nva) free(nva);
    return rv;
}

/* Queue response body; returns the stream's bytes not yet taken by nghttp2 (or an error). */
long askr_h2_push(askr_h2 *s, int32_t sid, const uint8_t *data, size_t len, int end) {
    askr_stream *st = nghttp2_session_get_stream_user_data(s->session, sid);
    if (!st || st->eof) return NGHTTP2_ERR_STREAM_CLOSED;
    if (len) {
        if (st->start && st->start == st->end) st->start = st->end = 0;
        if (st->start > st->cap / 2) {  /* compact rather than grow */
            memmove(st->data, st->data + st->start, st->end - st->start);
            st->end -= st->start; st->start = 0;
        }
        if (grow((void **)&st->data, &st->cap, st->end + len, 1)) return NGHTTP2_ERR_NOMEM;
        memcpy(st->data + st->end, data, len);
        st->end += len;
    }
    if (end) { st->eof = 1; st->finished = 1; }
    nghttp2_session_resume_data(s->session, sid);  /* fails harmlessly if it was not deferred */
    return (long)(st->end - st->start);
}

int askr_h2_reset(askr_h2 *s, int32_t sid, uint32_t error_code) {
    askr_stream *st = nghttp2_session_get_stream_user_data(s->session, sid);
    if (st) st->finished = 1;
    return nghttp2_submit_rst_stream(s->session, NGHTTP2_FLAG_NONE, sid, error_code);
}

int askr_h2_goaway(askr_h2 *s, int32_t last_stream_id, uint32_t error_code, const uint8_t *debug, size_t len,
                   int terminate) {
    int rv;
    if (terminate) rv = nghttp2_session_terminate_session2(s->session, last_stream_id, error_code);
    else rv = nghttp2_submit_goaway(s->session, NGHTTP2_FLAG_NONE, last_stream_id, error_code, debug, len);
    if (!rv) s->own_goaways++;
    return rv;
}

long askr_h2_pending(askr_h2 *s, int32_t sid) {
    askr_stream *st = nghttp2_session_get_stream_user_data(s->session, sid);
    return st ? (long)(st->end - st->start) : -1;
}

int askr_h2_consume(askr_h2 *s, int32_t sid, size_t n) {
    return nghttp2_session_consume_stream(s->session, sid, n);
}

/* h2c: the HTTP/1.1 request that carried Upgrade: h2c becomes stream 1, half-closed (remote). */
int askr_h2_upgrade(askr_h2 *s, const uint8_t *settings, size_t len, int head_request) {
    askr_stream *st = new_stream(s);
    if (!st) return NGHTTP2_ERR_NOMEM;
    /* as a server nghttp2 ignores upgrade2's stream_user_data: set it after */
    int rv = nghttp2_session_upgrade2(s->session, settings, len, head_request, NULL);
    if (!rv) rv = nghttp2_session_set_stream_user_data(s->session, 1, st);
    if (rv) free_stream(s, st);
    return rv;
}

int32_t askr_h2_remote_window(askr_h2 *s, int32_t sid) {
    return sid ? nghttp2_session_get_stream_remote_window_size(s->session, sid)
               : nghttp2_session_get_remote_window_size(s->session);
}

uint32_t askr_h2_remote_setting(askr_h2 *s, int id) {
    return nghttp2_session_get_remote_settings(s->session, (nghttp2_settings_id)id);
}

int32_t askr_h2_last_proc(askr_h2 *s) { return nghttp2_session_get_last_proc_stream_id(s->session); }
int askr_h2_want_read(askr_h2 *s) { return nghttp2_session_want_read(s->session); }
int askr_h2_want_write(askr_h2 *s) { return nghttp2_session_want_write(s->session) || s->nout; }
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("askr.front._nghttp2", SOURCE, libraries=["nghttp2"],
                      extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"])


def build(package_dir: Path) -> Path:
    """Compile the extension into package_dir (askr/front of a build tree or the source tree)."""
    with tempfile.TemporaryDirectory(prefix="askr-nghttp2-") as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp))
        target = package_dir / built.name
        shutil.copyfile(built, target)
    return target


if __name__ == "__main__":  # development build into the source tree: python askr/front/_nghttp2_build.py
    print(build(Path(__file__).resolve().parent))
