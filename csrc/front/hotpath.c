/* askr._hotpath: the front's per-request hot path in C (CPython API): the request head in
 * (parse_head), the request to PHP (encode_request), the worker's answer (read_frames) and the
 * HTTP/1.1 response out (compose_response). Each takes the common case and declines the rest,
 * which the Python code around it handles.
 *
 * parse_head() reads the common request in one call: a keep-alive GET or HEAD, no body, its head
 * complete in the buffer, every byte of it plainly valid. It returns what httptools' callbacks
 * and Stream.add_header would have built, or None to decline, and then the caller hands the
 * same bytes to httptools, whose checks and answers (400, 414, 431, 505, ...) stay the only ones.
 *
 * So it only has to be right about what it accepts, never about what it refuses: anything
 * unusual (a body, Expect, Upgrade, Connection other than keep-alive, a repeated field, obs-text,
 * bare LF, trailing blanks, a limit reached, an absolute-form target) is declined, and a
 * differential test (tests/unit/front/test_hotpath.py) checks that on every request it
 * accepts, it agrees with httptools field for field. Why it exists: a request through httptools
 * costs five Python callbacks and a dict and list built an item at a time (bench/front_path.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2 tchar */
static unsigned char is_tchar[256];
/* Request-target bytes accepted: unreserved, sub-delims, ":@/?%" (RFC 3986), no '#' */
static unsigned char is_target[256];
/* Field-value bytes accepted: visible ASCII, SP, HTAB (no obs-text) */
static unsigned char is_value[256];

static PyObject *s_get, *s_head, *s_v11, *s_v10, *s_empty;

static void init_tables(void)
{
    const char *tspecial = "!#$%&'*+-.^_`|~";
    const char *tgt = "-._~!$&'()*+,;=:@/?%";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        is_tchar[c] = alnum || (c && strchr(tspecial, c) != NULL);
        is_target[c] = alnum || (c && strchr(tgt, c) != NULL);
        is_value[c] = (c >= 0x20 && c <= 0x7e) || c == '\t';
    }
}

/* Request fields that give the message a body or change how it is read: httptools' path. */
static const char *const DECLINED[] = {
    "content-length", "transfer-encoding", "expect", "upgrade", "proxy-connection",
};

/* Case-insensitive compare of a field name (already a token) with a lower-case literal. */
static int name_is(const char *name, Py_ssize_t len, const char *lower)
{
    Py_ssize_t n = (Py_ssize_t)strlen(lower);
    if (len != n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* parse_head(data, start, max_request_line, max_headers, max_header_size)
 *   -> (end, method, url, version, headers, flat) | None
 * headers: {lower name: [name, value, index in flat]}; flat: [name, value, ...], as
 * askr.front.stream.Stream keeps them. */
static PyObject *parse_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_head(data: bytes, start, max_request_line, max_headers, max_header_size)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[3]);
    Py_ssize_t max_header_size = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred())
        return NULL;
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (start < 0 || start >= size)
        Py_RETURN_NONE;
    const char *p = buf + start, *end = buf + size;

    PyObject *method;
    if (end - p > 4 && memcmp(p, "GET /", 5) == 0) {
        method = s_get;
        p += 4;
    } else if (end - p > 5 && memcmp(p, "HEAD /", 6) == 0) {
        method = s_head;
        p += 5;
    } else {
        Py_RETURN_NONE;
    }
    const char *url = p;
    while (p < end && is_target[(unsigned char)*p])
        p++;
    Py_ssize_t url_len = p - url;
    if (url_len > max_line || end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || p[9] != '\r' || p[10] != '\n')
        Py_RETURN_NONE;
    int minor = p[8] - '0';
    if (minor != 0 && minor != 1)
        Py_RETURN_NONE;
    p += 11;

    /* The fields: validated and counted before any object is made. */
    enum { MAX_FAST_FIELDS = 64 };
    struct { const char *name, *value; Py_ssize_t name_len, value_len; } fields[MAX_FAST_FIELDS];
    int count = 0, has_host = 0, keep_alive = minor == 1;
    Py_ssize_t header_bytes = 0;
    for (;;) {
        if (end - p < 2)
            Py_RETURN_NONE;  /* the head is not all here */
        if (p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        const char *name = p;
        while (p < end && is_tchar[(unsigned char)*p])
            p++;
        if (p == name || p >= end || *p != ':')
            Py_RETURN_NONE;
        Py_ssize_t name_len = p - name;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *value = p;
        while (p < end && is_value[(unsigned char)*p])
            p++;
        Py_ssize_t value_len = p - value;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n' || value_len == 0
            || value[value_len - 1] == ' ' || value[value_len - 1] == '\t')
            Py_RETURN_NONE;
        p += 2;
        if (count == MAX_FAST_FIELDS || count >= max_headers)
            Py_RETURN_NONE;
        header_bytes += name_len + value_len + 4;
        if (header_bytes > max_header_size)
            Py_RETURN_NONE;
        /* the fields that change how the message is read */
        for (size_t k = 0; k < sizeof DECLINED / sizeof *DECLINED; k++)
            if (name_is(name, name_len, DECLINED[k]))
                Py_RETURN_NONE;
        if (name_is(name, name_len, "connection")) {
            if (!name_is(value, value_len, "keep-alive"))
                Py_RETURN_NONE;
            keep_alive = 1;
        }
        has_host |= name_is(name, name_len, "host");
        for (int i = 0; i < count; i++)  /* a repeated field is joined by add_header's rules: declined */
            if (fields[i].name_len == name_len && strncasecmp(fields[i].name, name, (size_t)name_len) == 0)
                Py_RETURN_NONE;
        fields[count].name = name;
        fields[count].name_len = name_len;
        fields[count].value = value;
        fields[count].value_len = value_len;
        count++;
    }
    if (!keep_alive || (minor == 1 && !has_host))
        Py_RETURN_NONE;

    PyObject *headers = PyDict_New();
    PyObject *flat = PyList_New(2 * count);
    PyObject *url_obj = PyBytes_FromStringAndSize(url, url_len);
    if (headers == NULL || flat == NULL || url_obj == NULL)
        goto fail;
    for (int i = 0; i < count; i++) {  /* the names are distinct (checked above) */
        PyObject *name = PyBytes_FromStringAndSize(fields[i].name, fields[i].name_len);
        PyObject *value = PyBytes_FromStringAndSize(fields[i].value, fields[i].value_len);
        PyList_SET_ITEM(flat, 2 * i, name);  /* flat owns them from here, also on failure */
        PyList_SET_ITEM(flat, 2 * i + 1, value);
        PyObject *lower = PyBytes_FromStringAndSize(NULL, fields[i].name_len);
        PyObject *index = PyLong_FromLong(2 * i);
        PyObject *entry = name && value && lower && index ? PyList_New(3) : NULL;
        if (entry == NULL) {
            Py_XDECREF(index);
        } else {  /* [name as sent, value, index in flat] */
            Py_INCREF(name);
            Py_INCREF(value);
            PyList_SET_ITEM(entry, 0, name);
            PyList_SET_ITEM(entry, 1, value);
            PyList_SET_ITEM(entry, 2, index);
            char *l = PyBytes_AS_STRING(lower);
            for (Py_ssize_t j = 0; j < fields[i].name_len; j++) {
                unsigned char c = (unsigned char)fields[i].name[j];
                l[j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
        }
        int failed = entry == NULL || PyDict_SetItem(headers, lower, entry) < 0;
        Py_XDECREF(entry);
        Py_XDECREF(lower);
        if (failed)
            goto fail;
    }
    Py_INCREF(method);
    PyObject *version = minor ? s_v11 : s_v10;
    Py_INCREF(version);
    return Py_BuildValue("(nNNNNN)", (Py_ssize_t)(p - buf), method, url_obj, version, headers, flat);

fail:
    Py_XDECREF(headers);
    Py_XDECREF(flat);
    Py_XDECREF(url_obj);
    return NULL;
}

/* The worker channel's frames (askr/bridge/wire.py, docs/internals.md): u8 kind, u32 length. */
enum { FRAME_HEADER = 5, F_HEAD = 0x11, F_RESP_BODY = 0x12, F_END = 0x13, F_TAKEN = 0x14 };

/* read_frames(data) -> (taken id, taken flags, status, header block, [body], end flags) | None
 *
 * One read from a worker channel that is the usual shape of a response, whole frames only:
 * [TAKEN] [HEAD] RESP_BODY* [END], in that order. A missing TAKEN or END is -1, a missing HEAD
 * status -1 with b"" for its block. Anything else (a split frame, HELLO, EARLY_HINTS, RECYCLE,
 * two responses in one read) is None: WorkerChannel.data_received's general loop reads it. */
static PyObject *read_frames(PyObject *self, PyObject *data)
{
    if (!PyBytes_Check(data))
        Py_RETURN_NONE;  /* a bytearray from a test's fake transport: the general loop */
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data), pos = 0;
    long long taken = -1;
    int taken_flags = 0, status = -1, end_flags = -1, stage = 0;  /* 0 TAKEN, 1 HEAD, 2 BODY, 3 END */
    Py_ssize_t block_at = 0, block_len = 0, bodies = 0;
    Py_ssize_t body_at[8], body_len[8];
    while (pos < size) {
        if (size - pos < FRAME_HEADER || end_flags >= 0)
            Py_RETURN_NONE;
        unsigned kind = buf[pos];
        Py_ssize_t len = ((Py_ssize_t)buf[pos + 1] << 24) | (buf[pos + 2] << 16) | (buf[pos + 3] << 8) | buf[pos + 4];
        Py_ssize_t at = pos + FRAME_HEADER;
        if (len > size - at)
            Py_RETURN_NONE;
        if (kind == F_TAKEN && stage == 0 && (len == 8 || len == 9)) {
            unsigned long long id = 0;
            for (int i = 0; i < 8; i++)
                id = (id << 8) | buf[at + i];
            if (id > (unsigned long long)LLONG_MAX)
                Py_RETURN_NONE;
            taken = (long long)id;
            taken_flags = len == 9 ? buf[at + 8] : 0;
            stage = 1;
        } else if (kind == F_HEAD && stage <= 1 && len >= 2) {
            status = (buf[at] << 8) | buf[at + 1];
            block_at = at + 2;
            block_len = len - 2;
            stage = 2;
        } else if (kind == F_RESP_BODY && bodies < 8) {
            body_at[bodies] = at;
            body_len[bodies++] = len;
            stage = 2;
        } else if (kind == F_END && len <= 1) {
            end_flags = len ? buf[at] : 0;
        } else {
            Py_RETURN_NONE;
        }
        pos = at + len;
    }
    PyObject *block = PyBytes_FromStringAndSize((const char *)buf + block_at, block_len);
    PyObject *body = PyList_New(bodies);
    if (block == NULL || body == NULL) {
        Py_XDECREF(block);
        Py_XDECREF(body);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < bodies; i++) {
        PyObject *part = PyBytes_FromStringAndSize((const char *)buf + body_at[i], body_len[i]);
        if (part == NULL) {
            Py_DECREF(block);
            Py_DECREF(body);
            return NULL;
        }
        PyList_SET_ITEM(body, i, part);
    }
    return Py_BuildValue("(LiiNNi)", taken, taken_flags, status, block, body, end_flags);
}

/* compose_response(status_line, header_block, date, server, body) -> bytes | None
 *
 * A whole keep-alive HTTP/1.1 response whose PHP header lines go out as PHP wrote them: the
 * status line, the lines ('\n' becomes CRLF), `date` and `server` unless PHP set its own, the
 * content-length of the joined `body`, the body. None when a line needs the front's care (a
 * Content-Length, Connection, Transfer-Encoding or Status field, a name that is not a token):
 * Http1Connection.send_php_head's line-by-line path handles those as before. */
static PyObject *compose_response(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2])
        || !PyBytes_Check(args[3]) || !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "compose_response(status_line, header_block, date, server, body: list)");
        return NULL;
    }
    const char *block = PyBytes_AS_STRING(args[1]);
    Py_ssize_t block_len = PyBytes_GET_SIZE(args[1]), lines = 0;
    int has_date = 0, has_server = 0;
    for (Py_ssize_t pos = 0; block_len && pos <= block_len; lines++) {
        const char *line = block + pos;
        const char *nl = memchr(line, '\n', (size_t)(block_len - pos));
        Py_ssize_t line_len = nl ? nl - line : block_len - pos;
        Py_ssize_t n = 0;
        while (n < line_len && is_tchar[(unsigned char)line[n]])
            n++;
        if (n == 0 || n == line_len || line[n] != ':')
            Py_RETURN_NONE;
        if (name_is(line, n, "content-length") || name_is(line, n, "connection")
            || name_is(line, n, "transfer-encoding") || name_is(line, n, "status"))
            Py_RETURN_NONE;
        has_date |= name_is(line, n, "date");
        has_server |= name_is(line, n, "server");
        pos += line_len + 1;
    }
    PyObject *body = args[4];
    Py_ssize_t parts = PyList_GET_SIZE(body), body_len = 0;
    for (Py_ssize_t i = 0; i < parts; i++) {
        PyObject *part = PyList_GET_ITEM(body, i);
        if (!PyBytes_Check(part)) {
            PyErr_SetString(PyExc_TypeError, "compose_response: body parts must be bytes");
            return NULL;
        }
        body_len += PyBytes_GET_SIZE(part);
    }
    char length[48];
    int length_len = snprintf(length, sizeof length, "content-length: %zd\r\n\r\n", body_len);
    Py_ssize_t date_len = has_date ? 0 : PyBytes_GET_SIZE(args[2]);
    Py_ssize_t server_len = has_server ? 0 : PyBytes_GET_SIZE(args[3]);
    Py_ssize_t total = PyBytes_GET_SIZE(args[0]) + (block_len ? block_len + (lines - 1) + 2 : 0) + date_len
                       + server_len + length_len + body_len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(out);
    memcpy(o, PyBytes_AS_STRING(args[0]), (size_t)PyBytes_GET_SIZE(args[0]));
    o += PyBytes_GET_SIZE(args[0]);
    for (Py_ssize_t i = 0; i < block_len; i++) {
        if (block[i] == '\n')
            *o++ = '\r';
        *o++ = block[i];
    }
    if (block_len) {
        *o++ = '\r';
        *o++ = '\n';
    }
    memcpy(o, PyBytes_AS_STRING(args[2]), (size_t)date_len);
    o += date_len;
    memcpy(o, PyBytes_AS_STRING(args[3]), (size_t)server_len);
    o += server_len;
    memcpy(o, length, (size_t)length_len);
    o += length_len;
    for (Py_ssize_t i = 0; i < parts; i++) {
        PyObject *part = PyList_GET_ITEM(body, i);
        memcpy(o, PyBytes_AS_STRING(part), (size_t)PyBytes_GET_SIZE(part));
        o += PyBytes_GET_SIZE(part);
    }
    if (o != PyBytes_AS_STRING(out) + total) {  /* the sizes above and the copies disagree */
        Py_DECREF(out);
        PyErr_SetString(PyExc_SystemError, "compose_response: length mismatch");
        return NULL;
    }
    return out;
}

/* Join the bytes items of `list` into `o`, each followed by a NUL; -1 (TypeError set) if an item
 * is not bytes. With o NULL, only the size is computed. */
static Py_ssize_t join_nul(PyObject *list, char *o)
{
    Py_ssize_t n = PyList_GET_SIZE(list), size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "encode_request: fields must be bytes");
            return -1;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(item);
        if (o != NULL) {
            memcpy(o + size, PyBytes_AS_STRING(item), (size_t)len);
            o[size + len] = '\0';
        }
        size += len + 1;
    }
    return size;
}

/* encode_request(params, headers, prefix) -> bytes: one REQUEST frame, as wire.encode_request
 * documents it, built in one allocation: the frame header, `prefix` (params already encoded,
 * each NUL-terminated), the params, an empty name, the headers, each item NUL-terminated. */
static PyObject *encode_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3 || !PyList_Check(args[0]) || !PyList_Check(args[1])
        || (nargs == 3 && !PyBytes_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "encode_request(params: list, headers: list, prefix: bytes = b'')");
        return NULL;
    }
    PyObject *prefix_obj = nargs == 3 ? args[2] : s_empty;
    Py_ssize_t params = join_nul(args[0], NULL), headers = join_nul(args[1], NULL);
    if (params < 0 || headers < 0)
        return NULL;
    Py_ssize_t prefix = PyBytes_GET_SIZE(prefix_obj);
    Py_ssize_t payload = prefix + params + 1 + headers;  /* + the empty name's NUL */
    if (payload > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "encode_request: the request does not fit a frame");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, FRAME_HEADER + payload);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    o[0] = 0x01;  /* REQUEST */
    o[1] = (unsigned char)(payload >> 24);
    o[2] = (unsigned char)(payload >> 16);
    o[3] = (unsigned char)(payload >> 8);
    o[4] = (unsigned char)payload;
    char *p = (char *)o + FRAME_HEADER;
    memcpy(p, PyBytes_AS_STRING(prefix_obj), (size_t)prefix);
    p += prefix;
    p += join_nul(args[0], p);
    *p++ = '\0';
    join_nul(args[1], p);
    return out;
}

static PyMethodDef methods[] = {
    {"parse_head", (PyCFunction)(void (*)(void))parse_head, METH_FASTCALL,
     "parse_head(data, start, max_request_line, max_headers, max_header_size) -> "
     "(end, method, url, version, headers, flat) or None: one plain keep-alive GET/HEAD head."},
    {"read_frames", read_frames, METH_O,
     "read_frames(data) -> (taken id, taken flags, status, header block, body parts, end flags) or None."},
    {"encode_request", (PyCFunction)(void (*)(void))encode_request, METH_FASTCALL,
     "encode_request(params, headers, prefix=b'') -> bytes: one REQUEST frame (askr.bridge.wire)."},
    {"compose_response", (PyCFunction)(void (*)(void))compose_response, METH_FASTCALL,
     "compose_response(status_line, header_block, date, server, body) -> bytes or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hotpath", "The front's HTTP/1.1 hot path in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hotpath(void)
{
    init_tables();
    s_get = PyBytes_FromString("GET");
    s_head = PyBytes_FromString("HEAD");
    s_v11 = PyUnicode_InternFromString("1.1");
    s_v10 = PyUnicode_InternFromString("1.0");
    s_empty = PyBytes_FromStringAndSize(NULL, 0);
    if (!s_get || !s_head || !s_v11 || !s_v10 || !s_empty)
        return NULL;
    return PyModule_Create(&module);
}
