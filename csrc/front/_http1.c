/* askr.front._http1: the front's per-request HTTP/1.1 hot path in C (CPython API).
 *
 * parse_head() reads the common request in one call: a keep-alive GET or HEAD, no body, its head
 * complete in the buffer, every byte of it plainly valid. It returns what httptools' callbacks
 * and Stream.add_header would have built, or None to decline, and then the caller hands the
 * same bytes to httptools, whose checks and answers (400, 414, 431, 505, ...) stay the only ones.
 *
 * So it only has to be right about what it accepts, never about what it refuses: anything
 * unusual (a body, Expect, Upgrade, Connection other than keep-alive, a repeated field, obs-text,
 * bare LF, trailing blanks, a limit reached, an absolute-form target) is declined, and a
 * differential test (tests/unit/front/test_http1_fastpath.py) checks that on every request it
 * accepts, it agrees with httptools field for field. Why it exists: a request through httptools
 * costs five Python callbacks and a dict and list built an item at a time (bench/front_path.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* RFC 9110 5.6.2 tchar */
static unsigned char is_tchar[256];
/* Request-target bytes accepted: unreserved, sub-delims, ":@/?%" (RFC 3986), no '#' */
static unsigned char is_target[256];
/* Field-value bytes accepted: visible ASCII, SP, HTAB (no obs-text) */
static unsigned char is_value[256];

static PyObject *s_get, *s_head, *s_v11, *s_v10;

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
        switch (name_len) {  /* the fields that change how the message is read */
        case 4:
            if (name_is(name, name_len, "host")) {
                if (has_host)
                    Py_RETURN_NONE;
                has_host = 1;
            }
            break;
        case 6:
            if (name_is(name, name_len, "expect"))
                Py_RETURN_NONE;
            break;
        case 7:
            if (name_is(name, name_len, "upgrade"))
                Py_RETURN_NONE;
            break;
        case 10:
            if (name_is(name, name_len, "connection")) {
                if (!name_is(value, value_len, "keep-alive"))
                    Py_RETURN_NONE;
                keep_alive = 1;
            }
            break;
        case 14:
            if (name_is(name, name_len, "content-length"))
                Py_RETURN_NONE;
            break;
        case 16:
            if (name_is(name, name_len, "proxy-connection"))
                Py_RETURN_NONE;
            break;
        case 17:
            if (name_is(name, name_len, "transfer-encoding"))
                Py_RETURN_NONE;
            break;
        }
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
    for (int i = 0; i < count; i++) {
        PyObject *name = PyBytes_FromStringAndSize(fields[i].name, fields[i].name_len);
        PyObject *value = PyBytes_FromStringAndSize(fields[i].value, fields[i].value_len);
        PyObject *lower = PyBytes_FromStringAndSize(NULL, fields[i].name_len);
        PyObject *index = PyLong_FromLong(2 * i);
        PyObject *entry = NULL;
        if (name && value && lower && index) {
            char *l = PyBytes_AS_STRING(lower);
            for (Py_ssize_t j = 0; j < fields[i].name_len; j++) {
                unsigned char c = (unsigned char)fields[i].name[j];
                l[j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
            entry = PyList_New(3);
        }
        if (entry == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(value);
            Py_XDECREF(lower);
            Py_XDECREF(index);
            goto fail;
        }
        int repeated = PyDict_Contains(headers, lower);
        if (repeated == 0) {
            Py_INCREF(name);
            Py_INCREF(value);
            PyList_SET_ITEM(entry, 0, name);
            PyList_SET_ITEM(entry, 1, value);
            PyList_SET_ITEM(entry, 2, index);
            PyList_SET_ITEM(flat, 2 * i, name);
            PyList_SET_ITEM(flat, 2 * i + 1, value);
            repeated = PyDict_SetItem(headers, lower, entry);
        } else {
            Py_DECREF(name);
            Py_DECREF(value);
            Py_DECREF(index);
        }
        Py_DECREF(entry);
        Py_DECREF(lower);
        if (repeated != 0) {  /* a repeated field is joined by add_header's rules: declined */
            Py_DECREF(headers);
            Py_DECREF(flat);
            Py_DECREF(url_obj);
            if (repeated < 0)
                return NULL;
            Py_RETURN_NONE;
        }
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

static PyMethodDef methods[] = {
    {"parse_head", (PyCFunction)(void (*)(void))parse_head, METH_FASTCALL,
     "parse_head(data, start, max_request_line, max_headers, max_header_size) -> "
     "(end, method, url, version, headers, flat) or None: one plain keep-alive GET/HEAD head."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_http1", "The front's HTTP/1.1 hot path in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__http1(void)
{
    init_tables();
    s_get = PyBytes_FromString("GET");
    s_head = PyBytes_FromString("HEAD");
    s_v11 = PyUnicode_InternFromString("1.1");
    s_v10 = PyUnicode_InternFromString("1.0");
    if (!s_get || !s_head || !s_v11 || !s_v10)
        return NULL;
    return PyModule_Create(&module);
}
