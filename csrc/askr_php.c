/*
 * askr-php: the PHP side of Askr.
 *
 * One program, two roles (see docs/internals.md):
 *   zygote  -- starts the PHP engine once (module startup, php.ini, OPcache shared memory),
 *              then forks workers on request from the master over a text control socket,
 *              reaps them and reports their exits. It never runs a PHP script.
 *   worker  -- a forked child: connects to its front's channel socket, says HELLO, then
 *              serves one request at a time over binary frames until the channel closes.
 *
 * This is a SAPI of its own, not php_embed_init(): the embed SAPI forces ini values
 * (output_buffering=0, max_execution_time=0, ...) over php.ini, and its name disables
 * OPcache. Where code follows an upstream SAPI it says so: php-src sapi/embed/php_embed.c
 * (module table), sapi/cli/php_cli.c (startup order, unwinding), sapi/fpm/fpm/fpm_main.c
 * (CGI request semantics our users migrate from), nginx unit's nxt_php_sapi.c (request
 * state in SG(server_context), engine started once before forking).
 */

#define _GNU_SOURCE   /* pipe2, memrchr (used by PHP headers) */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "php.h"
#include "SAPI.h"
#include "php_main.h"
#include "php_variables.h"
#include "php_ini.h"
#include "zend_signal.h"

/* ------------------------------------------------------------------ */
/* Wire constants (docs/internals.md, askr/bridge/wire.py)             */
/* ------------------------------------------------------------------ */

enum {
	F_REQUEST = 0x01, F_BODY = 0x02, F_BODY_END = 0x03,             /* front -> worker */
	F_HELLO = 0x10, F_HEAD = 0x11, F_RESP_BODY = 0x12, F_END = 0x13, /* worker -> front */
	F_TAKEN = 0x14,
};
#define END_FLAG_EXITING 0x01
#define QUEUE_MSG_HDR 9               /* u64 request id, u8 flags */
#define QUEUE_FLAG_BODY_ON_CHANNEL 0x01
#define FRAME_HDR 5

#define READ_BUF_SIZE   (256 * 1024) /* channel read buffer; also holds one queue message (MAX_QUEUE_MESSAGE) */
#define OUT_HIGH_WATER  (64 * 1024)  /* buffered response bytes that trigger a write */
#define OUT_DIRECT      (64 * 1024)  /* ub_write chunks this big skip the copy (writev) */

static inline void put_u16(char *p, uint16_t v) { p[0] = (char)(v >> 8); p[1] = (char)v; }
static inline void put_u32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24); p[1] = (char)(v >> 16); p[2] = (char)(v >> 8); p[3] = (char)v;
}
static inline uint64_t get_u64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) {
		v = (v << 8) | (uint8_t)p[i];
	}
	return v;
}

static inline void put_u64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (char)v;
		v >>= 8;
	}
}

/* The scoreboard: a slot of two native u64 per worker id (request id, pid), shared with the
 * front (mmap of the master's file). A worker writes the id of the queued request it took,
 * and 0 when done, so the front knows which request a worker that died was holding; the pid
 * tells the front the slot is still that worker's. Plain stores: no syscall per request. */
static volatile uint64_t *g_scoreboard;
static size_t g_scoreboard_slots;

static inline void scoreboard_set(uint32_t worker_id, uint64_t request_id)
{
	if (g_scoreboard && worker_id < g_scoreboard_slots) {
		g_scoreboard[2 * worker_id] = request_id;
	}
}

static inline void scoreboard_claim(uint32_t worker_id)
{
	if (g_scoreboard && worker_id < g_scoreboard_slots) {
		g_scoreboard[2 * worker_id] = 0;
		g_scoreboard[2 * worker_id + 1] = (uint64_t)getpid();
	}
}

static inline uint16_t get_u16(const char *p)
{
	return (uint16_t)(((uint8_t)p[0] << 8) | (uint8_t)p[1]);
}
static inline uint32_t get_u32(const char *p)
{
	return ((uint32_t)(uint8_t)p[0] << 24) | ((uint32_t)(uint8_t)p[1] << 16)
		| ((uint32_t)(uint8_t)p[2] << 8) | (uint32_t)(uint8_t)p[3];
}

/* ------------------------------------------------------------------ */
/* Logging: one line per record on stderr, same shape as the Python side */
/* ------------------------------------------------------------------ */

static char g_log_base[32] = "php";     /* --worker-log-name */
static char g_log_name[64] = "php-zygote";

static bool write_all_iov(int fd, struct iovec *iov, int cnt);

static void log_line(const char *level, const char *msg, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char head[160];

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	int n = snprintf(head, sizeof(head), "%04d-%02d-%02d %02d:%02d:%02d,%03ld %s [%s] ",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, level, g_log_name);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r')) {
		len--;
	}
	/* One record per line for the line-based reader on the other end: PHP's multi-line
	 * messages (uncaught exceptions with a stack trace) get their newlines escaped as "\n". */
	char *flat = NULL;
	size_t extra = 0;
	for (size_t i = 0; i < len; i++) {
		extra += msg[i] == '\n';
	}
	if (extra && (flat = malloc(len + extra))) {
		size_t j = 0;
		for (size_t i = 0; i < len; i++) {
			if (msg[i] == '\n') {
				flat[j++] = '\\';
				flat[j++] = 'n';
			} else {
				flat[j++] = msg[i];
			}
		}
		msg = flat;
		len = j;
	}
	struct iovec iov[3] = {
		{ head, (size_t)n }, { (void *)msg, len }, { "\n", 1 },
	};
	write_all_iov(STDERR_FILENO, iov, 3);
	free(flat);
}

static void askr_log(const char *level, const char *fmt, ...) ZEND_ATTRIBUTE_FORMAT(printf, 2, 3);
static void askr_log(const char *level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0) {
		return;
	}
	log_line(level, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* ------------------------------------------------------------------ */
/* Raw I/O: every write survives EINTR and partial writes              */
/* ------------------------------------------------------------------ */

static bool write_all_iov(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return false;
		}
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return true;
}

static bool write_all(int fd, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };
	return len == 0 || write_all_iov(fd, &iov, 1);
}

/* Grow-only heap buffer: per-request work reuses it, so steady state does no malloc. */
static bool grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap) {
		return true;
	}
	size_t ncap = *cap ? *cap : 4096;
	while (ncap < need) {
		ncap *= 2;
	}
	char *p = realloc(*buf, ncap);
	if (!p) {
		return false;
	}
	*buf = p;
	*cap = ncap;
	return true;
}

/* ------------------------------------------------------------------ */
/* Channel: buffered reader + response buffer over the unix socket     */
/* ------------------------------------------------------------------ */

typedef struct {
	int fd;
	bool dead;        /* EOF, write error or protocol error: finish the request, then exit */
	char *rbuf;
	size_t rpos, rlen;
	/* Response frames being built: HEAD, BODY..., END; written in as few write()s as possible. */
	char *out;
	size_t out_len, out_cap;
	size_t body_at;   /* offset of the open BODY frame's header, or SIZE_MAX */
} askr_chan;

/* Read exactly n bytes (dst may be NULL to skip). 0 on success, -1 on EOF/error. */
static int chan_read(askr_chan *c, char *dst, size_t n)
{
	while (n > 0) {
		if (c->rpos < c->rlen) {
			size_t k = c->rlen - c->rpos;
			if (k > n) {
				k = n;
			}
			if (dst) {
				memcpy(dst, c->rbuf + c->rpos, k);
				dst += k;
			}
			c->rpos += k;
			n -= k;
			continue;
		}
		ssize_t r;
		if (dst && n >= READ_BUF_SIZE) {
			r = read(c->fd, dst, n);   /* large payload: straight into place */
			if (r > 0) {
				dst += r;
				n -= (size_t)r;
				continue;
			}
		} else {
			r = read(c->fd, c->rbuf, READ_BUF_SIZE);
			if (r > 0) {
				c->rpos = 0;
				c->rlen = (size_t)r;
				continue;
			}
		}
		if (r < 0 && errno == EINTR) {
			continue;
		}
		c->dead = true;
		return -1;
	}
	return 0;
}

/* Next frame header. 1 = got one, 0 = clean EOF between frames, -1 = EOF mid-header/error. */
static int chan_read_header(askr_chan *c, uint8_t *type, uint32_t *len)
{
	char h[FRAME_HDR];
	if (c->rpos == c->rlen) {
		ssize_t r;
		do {
			r = read(c->fd, c->rbuf, READ_BUF_SIZE);
		} while (r < 0 && errno == EINTR);
		if (r <= 0) {
			c->dead = true;
			return r == 0 ? 0 : -1;
		}
		c->rpos = 0;
		c->rlen = (size_t)r;
	}
	if (chan_read(c, h, FRAME_HDR) < 0) {
		return -1;
	}
	*type = (uint8_t)h[0];
	*len = get_u32(h + 1);
	return 1;
}

static bool out_reserve(askr_chan *c, size_t extra)
{
	return grow(&c->out, &c->out_cap, c->out_len + extra);
}

static void out_frame_header(askr_chan *c, uint8_t type, uint32_t len)
{
	char *p = c->out + c->out_len;
	p[0] = (char)type;
	put_u32(p + 1, len);
	c->out_len += FRAME_HDR;
}

/* Patch the length of the open BODY frame (drop it if empty). */
static void out_close_body(askr_chan *c)
{
	if (c->body_at == SIZE_MAX) {
		return;
	}
	size_t len = c->out_len - c->body_at - FRAME_HDR;
	if (len == 0) {
		c->out_len = c->body_at;
	} else {
		put_u32(c->out + c->body_at + 1, (uint32_t)len);
	}
	c->body_at = SIZE_MAX;
}

/* Write everything buffered. False when the front is gone. */
static bool out_flush(askr_chan *c)
{
	out_close_body(c);
	bool ok = c->dead || write_all(c->fd, c->out, c->out_len);
	c->out_len = 0;
	if (!ok) {
		c->dead = true;
	}
	return !c->dead;
}

static bool out_body(askr_chan *c, const char *str, size_t len)
{
	if (len >= OUT_DIRECT) {
		/* Big chunk: send what is buffered, a header and the caller's bytes in one writev. */
		char hdr[FRAME_HDR];
		out_close_body(c);
		hdr[0] = F_RESP_BODY;
		put_u32(hdr + 1, (uint32_t)len);
		struct iovec iov[3] = { { c->out, c->out_len }, { hdr, FRAME_HDR }, { (void *)str, len } };
		if (!c->dead && !write_all_iov(c->fd, iov, 3)) {
			c->dead = true;
		}
		c->out_len = 0;
		return !c->dead;
	}
	if (!out_reserve(c, FRAME_HDR + len)) {
		return false;
	}
	if (c->body_at == SIZE_MAX) {
		c->body_at = c->out_len;
		out_frame_header(c, F_RESP_BODY, 0);
	}
	memcpy(c->out + c->out_len, str, len);
	c->out_len += len;
	if (c->out_len >= OUT_HIGH_WATER) {
		return out_flush(c);
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Request state: one struct, reachable from every hook via            */
/* SG(server_context). Classic mode and a future worker mode share it  */
/* and the begin/finish functions below.                               */
/* ------------------------------------------------------------------ */

typedef struct {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
} askr_kv;

typedef struct {
	askr_chan *chan;
	uint32_t worker_id;

	/* Decoded REQUEST frame, parsed in place: names and values point into `payload`. */
	char *payload;
	size_t payload_cap;
	askr_kv *kv;               /* params first, then headers */
	size_t kv_cap;
	uint32_t nparams, nheaders;

	/* Values the SAPI needs directly (pointers into `payload`, or NULL). */
	const char *method, *query, *script, *php_self, *content_type, *content_length, *protocol;
	const char *cookie, *authorization;
	bool has_auth_type;

	double request_time;       /* REQUEST receipt, for REQUEST_TIME(_FLOAT) */

	uint32_t body_left;        /* unread bytes of the current BODY frame */
	bool body_done;            /* BODY_END seen */

	bool active;               /* between request_begin() and request_finish() */
	bool head_queued;
} askr_request;

static askr_request *current_request(void)
{
	askr_request *r = SG(server_context);
	return r && r->active ? r : NULL;
}

/* Queue the HEAD frame: u16 status, then the header lines joined with '\n'. */
static void queue_head(askr_request *r, int status, zend_llist *headers)
{
	askr_chan *c = r->chan;
	zend_llist_position pos;
	sapi_header_struct *h;
	size_t len = 2;

	if (r->head_queued) {
		return;
	}
	r->head_queued = true;
	if (headers) {
		for (h = zend_llist_get_first_ex(headers, &pos); h; h = zend_llist_get_next_ex(headers, &pos)) {
			len += h->header_len + 1;
		}
	}
	if (len > 2) {
		len--;                 /* no separator after the last line */
	}
	if (!out_reserve(c, FRAME_HDR + len + 1)) {
		c->dead = true;
		return;
	}
	out_frame_header(c, F_HEAD, (uint32_t)len);
	put_u16(c->out + c->out_len, (uint16_t)(status > 0 && status < 1000 ? status : 200));
	c->out_len += 2;
	if (headers) {
		bool first = true;
		for (h = zend_llist_get_first_ex(headers, &pos); h; h = zend_llist_get_next_ex(headers, &pos)) {
			if (!first) {
				c->out[c->out_len++] = '\n';
			}
			first = false;
			memcpy(c->out + c->out_len, h->header, h->header_len);
			c->out_len += h->header_len;
		}
	}
}

/* Next BODY frame of the request. False at BODY_END (or on a broken channel). */
static bool next_body_frame(askr_request *r)
{
	uint8_t type;
	uint32_t len;

	while (!r->body_done) {
		if (chan_read_header(r->chan, &type, &len) != 1) {
			r->body_done = true;
			break;
		}
		if (type == F_BODY) {
			if (len == 0) {
				continue;
			}
			r->body_left = len;
			return true;
		}
		if (type != F_BODY_END) {
			askr_log("ERROR", "protocol error: frame type 0x%02x inside a request body", type);
			r->chan->dead = true;
		}
		r->body_done = true;
	}
	return false;
}

/* Read (and discard) whatever the script left of the body, so the channel is clean. */
static void drain_body(askr_request *r)
{
	do {
		if (r->body_left && chan_read(r->chan, NULL, r->body_left) < 0) {
			r->body_done = true;
		}
		r->body_left = 0;
	} while (next_body_frame(r));
}

/* Decode a REQUEST payload of `len` bytes (header already read). False on a malformed frame.
 * The payload is NUL-separated "name\0value\0" pairs: params, an empty name, then headers
 * (docs/internals.md). It is parsed in place: every name and value is already NUL-terminated. */
static bool decode_request(askr_request *r, uint32_t len)
{
	if (len == 0 || !grow(&r->payload, &r->payload_cap, len + 1)
		|| chan_read(r->chan, r->payload, len) < 0) {
		return false;
	}
	r->payload[len] = '\0';
	if (r->payload[len - 1] != '\0') {
		return false;
	}
	char *p = r->payload, *end = r->payload + len;
	size_t nkv = 0;
	int section = 0;

	r->method = r->query = r->script = r->php_self = NULL;
	r->content_type = r->content_length = r->protocol = r->cookie = r->authorization = NULL;
	r->has_auth_type = false;
	r->nparams = r->nheaders = 0;
	while (p < end) {
		size_t nlen = strlen(p);
		if (nlen == 0) {
			if (section == 1) {
				return false;
			}
			section = 1;
			r->nparams = (uint32_t)nkv;
			p++;
			continue;
		}
		char *value = p + nlen + 1;
		if (value >= end) {
			return false;
		}
		size_t vlen = strlen(value);
		if (nkv == r->kv_cap) {
			size_t ncap = r->kv_cap ? r->kv_cap * 2 : 64;
			askr_kv *nk = realloc(r->kv, ncap * sizeof(*nk));
			if (!nk) {
				return false;
			}
			r->kv = nk;
			r->kv_cap = ncap;
		}
		askr_kv *kv = &r->kv[nkv++];
		kv->name = p;
		kv->name_len = nlen;
		kv->value = value;
		kv->value_len = vlen;
		p = value + vlen + 1;

		if (section == 0) {
			if (!strcmp(kv->name, "REQUEST_METHOD")) r->method = value;
			else if (!strcmp(kv->name, "QUERY_STRING")) r->query = value;
			else if (!strcmp(kv->name, "SCRIPT_FILENAME")) r->script = value;
			else if (!strcmp(kv->name, "PHP_SELF")) r->php_self = value;
			else if (!strcmp(kv->name, "CONTENT_TYPE")) r->content_type = value;
			else if (!strcmp(kv->name, "CONTENT_LENGTH")) r->content_length = value;
			else if (!strcmp(kv->name, "SERVER_PROTOCOL")) r->protocol = value;
			else if (!strcmp(kv->name, "AUTH_TYPE")) r->has_auth_type = true;
		} else {
			if (!strcasecmp(kv->name, "Cookie")) r->cookie = value;
			else if (!strcasecmp(kv->name, "Authorization")) r->authorization = value;
		}
	}
	if (section == 0) {
		r->nparams = (uint32_t)nkv;
	}
	r->nheaders = (uint32_t)(nkv - r->nparams);
	r->body_left = 0;
	r->body_done = false;
	r->head_queued = false;
	return true;
}

static const askr_kv *find_param(askr_request *r, const char *name, size_t len)
{
	for (uint32_t i = 0; i < r->nparams; i++) {
		if (r->kv[i].name_len == len && !memcmp(r->kv[i].name, name, len)) {
			return &r->kv[i];
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* SAPI hooks                                                          */
/* ------------------------------------------------------------------ */

static int askr_startup(sapi_module_struct *module)
{
	return php_module_startup(module, NULL);
}

/* Runs at the end of sapi_activate(), after it reset proto_num to HTTP/1.0. */
static int askr_activate(void)
{
	askr_request *r = current_request();
	if (r && r->protocol && !strncmp(r->protocol, "HTTP/", 5)) {
		const char *v = r->protocol + 5;
		int major = v[0] - '0', minor = (v[1] == '.') ? v[2] - '0' : 0;
		if (major >= 0 && major <= 9 && minor >= 0 && minor <= 9) {
			SG(request_info).proto_num = major * 1000 + minor;
		}
	}
	return SUCCESS;
}

/* Script output: buffered into BODY frames; outside a request (startup messages) to stderr. */
static size_t askr_ub_write(const char *str, size_t len)
{
	askr_request *r = current_request();
	if (!r) {
		write_all(STDERR_FILENO, str, len);
		return len;
	}
	if (!r->head_queued) {
		queue_head(r, SG(sapi_headers).http_response_code, &SG(sapi_headers).headers);
	}
	if (r->chan->dead || !out_body(r->chan, str, len)) {
		php_handle_aborted_connection();   /* bails out unless ignore_user_abort */
	}
	return len;
}

/* PHP's flush(): send headers if still pending, then write everything buffered (streaming). */
static void askr_flush(void *server_context)
{
	askr_request *r = current_request();
	if (!r) {
		return;
	}
	if (!SG(headers_sent)) {
		sapi_send_headers();
	}
	if (!out_flush(r->chan)) {
		php_handle_aborted_connection();
	}
}

/* Like FPM: a getenv() of a CGI param answers from the request. PHP efree()s the result. */
static char *askr_getenv(const char *name, size_t len)
{
	askr_request *r = current_request();
	const askr_kv *kv = r ? find_param(r, name, len) : NULL;
	return kv ? estrndup(kv->value, kv->value_len) : NULL;
}

/* Status and header lines become the HEAD frame; it goes out with the first write. */
static int askr_send_headers(sapi_headers_struct *headers)
{
	askr_request *r = current_request();
	if (r) {
		queue_head(r, headers->http_response_code, &headers->headers);
	}
	return SAPI_HEADER_SENT_SUCCESSFULLY;
}

/* Request body, streamed from BODY frames. Fills `count` unless BODY_END comes first:
 * sapi_read_post_block() treats a short read as end of body. */
static size_t askr_read_post(char *buffer, size_t count)
{
	askr_request *r = current_request();
	size_t got = 0;
	if (!r) {
		return 0;
	}
	while (got < count) {
		if (r->body_left == 0) {
			if (!next_body_frame(r)) {
				break;
			}
			continue;
		}
		size_t n = count - got < r->body_left ? count - got : r->body_left;
		if (chan_read(r->chan, buffer + got, n) < 0) {
			r->body_left = 0;
			r->body_done = true;
			break;
		}
		got += n;
		r->body_left -= (uint32_t)n;
	}
	return got;
}

/* The Cookie header, parsed by PHP into $_COOKIE. */
static char *askr_read_cookies(void)
{
	askr_request *r = current_request();
	return r ? (char *)r->cookie : NULL;
}

/* One $_SERVER entry, through the input filter as FPM does (ext/filter may rewrite it). */
static void register_one(const char *name, const char *value, size_t len, zval *arr)
{
	char *v = (char *)value;
	size_t nlen = len;
	if (sapi_module.input_filter(PARSE_SERVER, name, &v, len, &nlen)) {
		php_register_variable_safe(name, v, nlen, arr);
	}
}

/* $_SERVER: the CGI params as given, then headers as HTTP_*. Process env is not imported
 * (php-fpm's default clear_env=yes); getenv() still falls back to it. */
static void askr_register_variables(zval *arr)
{
	askr_request *r = current_request();
	char stackname[256];
	if (!r) {
		return;
	}
	for (uint32_t i = 0; i < r->nparams; i++) {
		register_one(r->kv[i].name, r->kv[i].value, r->kv[i].value_len, arr);
	}
	for (uint32_t i = r->nparams; i < r->nparams + r->nheaders; i++) {
		const askr_kv *kv = &r->kv[i];
		/* '_' would be ambiguous after conversion; Proxy is httpoxy; the Content-* two are params. */
		if (memchr(kv->name, '_', kv->name_len) || !strcasecmp(kv->name, "Proxy")
			|| !strcasecmp(kv->name, "Content-Type") || !strcasecmp(kv->name, "Content-Length")) {
			continue;
		}
		size_t need = kv->name_len + 6;
		char *name = need <= sizeof(stackname) ? stackname : emalloc(need);
		memcpy(name, "HTTP_", 5);
		for (size_t j = 0; j < kv->name_len; j++) {
			char ch = kv->name[j];
			name[5 + j] = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch);
		}
		name[5 + kv->name_len] = '\0';
		register_one(name, kv->value, kv->value_len, arr);
		if (name != stackname) {
			efree(name);
		}
	}
	if (!r->has_auth_type && (SG(request_info).auth_user || SG(request_info).auth_digest)) {
		const char *t = SG(request_info).auth_digest ? "Digest" : "Basic";
		register_one("AUTH_TYPE", t, strlen(t), arr);
	}
}

/* error_log() and PHP's own log lines, with a level the Python side understands. */
static void askr_log_message(const char *message, int syslog_type)
{
	const char *level;
	switch (syslog_type) {
		case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR:
			level = "ERROR";
			break;
		case LOG_WARNING: case LOG_NOTICE:
			level = "WARNING";    /* no NOTICE level in Python logging */
			break;
		default:
			level = "INFO";
	}
	log_line(level, message, strlen(message));
}

/* REQUEST_TIME(_FLOAT): when the REQUEST frame arrived, not when PHP got round to it. */
static zend_result askr_get_request_time(double *t)
{
	askr_request *r = current_request();
	if (!r) {
		return FAILURE;
	}
	*t = r->request_time;
	return SUCCESS;
}

/*
 * The module table. Name "fpm-fcgi": PHP 8.2's OPcache only enables itself for SAPI names
 * on its allow-list (not "embed", which frameworks also treat as a console), and apps branch
 * on php_sapi_name() (Laravel, Symfony, MediaWiki's path handling, zlib output handlers).
 * Our users migrate from php-fpm, so their apps must see exactly what they saw there.
 */
static sapi_module_struct askr_sapi_module = {
	"fpm-fcgi",                  /* name (see above) */
	"Askr",                      /* pretty_name */
	askr_startup,                /* startup: php_module_startup */
	php_module_shutdown_wrapper, /* shutdown */
	askr_activate,               /* activate: per-request fixups after sapi_activate */
	NULL,                        /* deactivate */
	askr_ub_write,               /* ub_write: buffered BODY frames */
	askr_flush,                  /* flush: flush() writes HEAD/BODY now */
	NULL,                        /* get_stat */
	askr_getenv,                 /* getenv: request params first, like FPM */
	php_error,                   /* sapi_error */
	NULL,                        /* header_handler: default header list handling */
	askr_send_headers,           /* send_headers: encode the HEAD frame */
	NULL,                        /* send_header: unused, send_headers does it all */
	askr_read_post,              /* read_post: streamed BODY frames */
	askr_read_cookies,           /* read_cookies: the Cookie header */
	askr_register_variables,     /* register_server_variables: params + HTTP_* */
	askr_log_message,            /* log_message: one line on stderr */
	askr_get_request_time,       /* get_request_time */
	NULL,                        /* terminate_process */
	NULL,                        /* php_ini_path_override: set from --ini-file */
	NULL,                        /* default_post_reader: PHP's (set in module startup) */
	NULL,                        /* treat_data: PHP's */
	NULL,                        /* executable_location */
	0,                           /* php_ini_ignore */
	1,                           /* php_ini_ignore_cwd: never read ./php.ini (as CLI/FPM) */
	NULL,                        /* get_fd */
	NULL,                        /* force_http_10 */
	NULL,                        /* get_target_uid */
	NULL,                        /* get_target_gid */
	NULL,                        /* input_filter: PHP's */
	NULL,                        /* ini_defaults */
	0,                           /* phpinfo_as_text */
	NULL,                        /* ini_entries: built from --ini */
	NULL,                        /* additional_functions: worker mode will add its own */
	NULL,                        /* input_filter_init */
};

/* ------------------------------------------------------------------ */
/* Request begin/finish (shared by classic and, later, worker mode)    */
/* ------------------------------------------------------------------ */

/* Fill SG(request_info) from the decoded REQUEST and start a PHP request.
 * Field choices follow fpm_main.c's init_request_info(). */
static bool request_begin(askr_request *r)
{
	sapi_request_info *ri = &SG(request_info);

	SG(server_context) = r;
	r->active = true;
	ri->request_method = r->method;
	ri->query_string = (char *)r->query;
	ri->request_uri = (char *)r->php_self;
	ri->path_translated = (char *)r->script;
	ri->content_type = r->content_type;
	ri->content_length = r->content_length ? ZEND_STRTOL(r->content_length, NULL, 10) : 0;
	SG(sapi_headers).http_response_code = 200;   /* php_error_cb turns a 200 into 500 on fatal */
	php_handle_auth_data(r->authorization);      /* sets (or clears) auth_user/password/digest */
	if (php_request_startup() != SUCCESS) {
		return false;
	}
	/* The first request installed Zend's signal handlers for this process; they stay installed.
	 * Without this, every request re-probes them with 7 sigaction() calls. */
	SIGG(reset) = false;
	return true;
}

/* End the PHP request (if started), then complete the response: HEAD (500 if PHP never got
 * as far as sending one), remaining BODY, the unread request body drained, END, one write. */
static void request_finish(askr_request *r, bool started, bool exiting)
{
	askr_chan *c = r->chan;
	if (started) {
		php_request_shutdown(NULL);    /* flushes output and sends headers via our hooks */
	}
	if (!r->head_queued) {
		queue_head(r, 500, NULL);
	}
	r->active = false;
	SG(server_context) = NULL;
	drain_body(r);
	out_close_body(c);
	if (out_reserve(c, FRAME_HDR + 1)) {
		out_frame_header(c, F_END, 1);
		c->out[c->out_len++] = exiting ? END_FLAG_EXITING : 0;
	}
	out_flush(c);
}

/* A response PHP never sees (missing script), shaped like php-fpm's. */
static void respond_plain(askr_request *r, int status, const char *body, bool exiting)
{
	static const char ctype[] = "Content-type: text/html; charset=UTF-8";
	askr_chan *c = r->chan;
	size_t blen = strlen(body);
	if (out_reserve(c, 2 * FRAME_HDR + 2 + sizeof(ctype) + blen)) {
		out_frame_header(c, F_HEAD, (uint32_t)(2 + sizeof(ctype) - 1));
		put_u16(c->out + c->out_len, (uint16_t)status);
		memcpy(c->out + c->out_len + 2, ctype, sizeof(ctype) - 1);
		c->out_len += 2 + sizeof(ctype) - 1;
		r->head_queued = true;
		out_body(c, body, blen);
	}
	request_finish(r, false, exiting);
}

/* ------------------------------------------------------------------ */
/* Worker                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
	uint32_t worker_id;
	uint32_t generation;
	unsigned long max_requests;   /* 0 = unlimited */
	const char *channel_path;
	int queue_fd;                 /* the front's request queue, or -1: requests come on the channel */
} worker_config;

static int channel_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -1;
	}
	int rc;
	do {
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	} while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Classic mode: each request runs SCRIPT_FILENAME from the top, like php-fpm. */
static void serve_classic(askr_request *r, bool last, bool *must_exit)
{
	struct stat st;

	if (!r->script || stat(r->script, &st) != 0 || !S_ISREG(st.st_mode)) {
		respond_plain(r, 404, "File not found.\n", last);   /* FPM: "Primary script unknown" */
		return;
	}
	if (!request_begin(r)) {
		askr_log("ERROR", "php_request_startup failed; worker exits after this response");
		*must_exit = true;
		request_finish(r, true, true);
		return;
	}
	zend_file_handle fh;
	zend_stream_init_filename(&fh, r->script);
	zend_try {
		php_execute_script(&fh);
	} zend_end_try();
	zend_destroy_file_handle(&fh);
	request_finish(r, true, last);
}

/* Take the next request from the front's queue (a SOCK_SEQPACKET socket all of that front's
 * workers read: the kernel gives each message to one of them, so a free worker takes the next
 * request at once, first come first served, like php-fpm children sharing an accept queue).
 * A message is u64 id, u8 flags, then frames (REQUEST, BODY..., BODY_END), which go straight
 * into the channel's read buffer; with QUEUE_FLAG_BODY_ON_CHANNEL the body follows on the
 * channel instead, once the front sees our TAKEN. 1 = took one, 0 = queue closed, -1 = error. */
static int take_queued(int queue_fd, askr_chan *c, uint32_t worker_id)
{
	char hdr[QUEUE_MSG_HDR];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { c->rbuf, READ_BUF_SIZE } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	if (c->rpos != c->rlen) {
		askr_log("ERROR", "protocol error: %zu unexpected bytes on the channel", c->rlen - c->rpos);
		return -1;
	}
	do {
		n = recvmsg(queue_fd, &msg, 0);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		return 0;
	}
	if (n < QUEUE_MSG_HDR || (msg.msg_flags & MSG_TRUNC)) {
		askr_log("ERROR", "bad queue message (%zd bytes%s)", n, (msg.msg_flags & MSG_TRUNC) ? ", truncated" : "");
		return -1;
	}
	uint64_t id = get_u64(hdr);
	scoreboard_set(worker_id, id);
	c->rpos = 0;
	c->rlen = (size_t)n - QUEUE_MSG_HDR;
	/* TAKEN goes out with the response (one write), or now if the front must stream the body. */
	if (!out_reserve(c, FRAME_HDR + 8)) {
		return -1;
	}
	out_frame_header(c, F_TAKEN, 8);
	put_u64(c->out + c->out_len, id);
	c->out_len += 8;
	if ((hdr[8] & QUEUE_FLAG_BODY_ON_CHANNEL) && !out_flush(c)) {
		return -1;
	}
	return 1;
}

/* The worker's life: HELLO, then one request at a time until EOF or max_requests. */
static int worker_run(const worker_config *cfg)
{
	static askr_chan chan;
	static askr_request req;
	char hello[FRAME_HDR + 12];
	unsigned long served = 0;
	bool must_exit = false;

	snprintf(g_log_name, sizeof(g_log_name), "%s#%u", g_log_base, cfg->worker_id);
	chan.fd = channel_connect(cfg->channel_path);
	if (chan.fd < 0) {
		askr_log("ERROR", "cannot connect to %s: %s", cfg->channel_path, strerror(errno));
		return 1;
	}
	chan.rbuf = malloc(READ_BUF_SIZE);
	chan.body_at = SIZE_MAX;
	if (!chan.rbuf || !out_reserve(&chan, 2 * OUT_HIGH_WATER)) {
		askr_log("ERROR", "out of memory");
		return 1;
	}
	req.chan = &chan;
	req.worker_id = cfg->worker_id;
	scoreboard_claim(cfg->worker_id);

	hello[0] = F_HELLO;
	put_u32(hello + 1, 12);
	put_u32(hello + 5, cfg->worker_id);
	put_u32(hello + 9, (uint32_t)getpid());
	put_u32(hello + 13, cfg->generation);
	if (!write_all(chan.fd, hello, sizeof(hello))) {
		askr_log("ERROR", "cannot send HELLO: %s", strerror(errno));
		return 1;
	}

	for (;;) {
		uint8_t type;
		uint32_t len;
		struct timespec ts;
		if (cfg->queue_fd >= 0) {
			int took = take_queued(cfg->queue_fd, &chan, cfg->worker_id);
			if (took <= 0) {
				return took < 0 ? 1 : 0;
			}
		}
		int rc = chan_read_header(&chan, &type, &len);
		if (rc == 0) {
			return 0;                      /* front closed the channel: retire */
		}
		if (rc < 0) {
			askr_log("WARNING", "channel broken while idle");
			return 0;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		req.request_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
		if (type != F_REQUEST || !decode_request(&req, len)) {
			askr_log("ERROR", "protocol error: bad frame (type 0x%02x, %u bytes) while idle", type, len);
			return 1;
		}
		served++;
		bool last = cfg->max_requests && served >= cfg->max_requests;
		serve_classic(&req, last, &must_exit);
		scoreboard_set(cfg->worker_id, 0);
		if (chan.dead) {
			return 0;                      /* front vanished mid-request */
		}
		if (last || must_exit) {
			return 0;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Zygote                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
	pid_t pid;
	uint32_t worker_id;
} child_entry;

static int g_sigchld_pipe[2] = { -1, -1 };

static void on_sigchld(int sig)
{
	int saved = errno;
	ssize_t n = write(g_sigchld_pipe[1], "c", 1);
	(void)n;
	errno = saved;
}

static void ctl_send(int fd, const char *fmt, ...) ZEND_ATTRIBUTE_FORMAT(printf, 2, 3);
static void ctl_send(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(buf)) {
		write_all(fd, buf, (size_t)n);    /* a vanished master shows up as EOF on the next read */
	}
}

static void reap_children(int ctl_fd, child_entry *kids, size_t *nkids)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < *nkids; i++) {
			if (kids[i].pid != pid) {
				continue;
			}
			if (WIFSIGNALED(status)) {
				ctl_send(ctl_fd, "exited %u %d -1 %d\n", kids[i].worker_id, (int)pid, WTERMSIG(status));
			} else {
				ctl_send(ctl_fd, "exited %u %d %d 0\n", kids[i].worker_id, (int)pid, WEXITSTATUS(status));
			}
			kids[i] = kids[--*nkids];
			break;
		}
	}
}

/*
 * The control loop. Returns in the zygote (EOF on the control socket: 0) and in each
 * forked worker (its exit code), so both unwind through main().
 */
static int zygote_run(int ctl_fd, uint32_t generation)
{
	char line[4096];
	size_t used = 0;
	child_entry *kids = NULL;
	size_t nkids = 0, kids_cap = 0;
	struct sigaction sa = { .sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP };

	if (pipe2(g_sigchld_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		ctl_send(ctl_fd, "failed pipe2: %s\n", strerror(errno));
		return 1;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	ctl_send(ctl_fd, "ready %d\n", (int)getpid());

	for (;;) {
		struct pollfd pfd[2] = { { ctl_fd, POLLIN, 0 }, { g_sigchld_pipe[0], POLLIN, 0 } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			askr_log("ERROR", "poll: %s", strerror(errno));
			break;
		}
		if (pfd[1].revents) {
			char drain[64];
			while (read(g_sigchld_pipe[0], drain, sizeof(drain)) > 0) {
			}
			reap_children(ctl_fd, kids, &nkids);
		}
		if (!pfd[0].revents) {
			continue;
		}
		ssize_t n = read(ctl_fd, line + used, sizeof(line) - 1 - used);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;                             /* master gone: stop forking, leave workers be */
		}
		used += (size_t)n;
		char *start = line, *nl;
		while ((nl = memchr(start, '\n', used - (size_t)(start - line)))) {
			*nl = '\0';
			char *save, *cmd = strtok_r(start, " ", &save);
			char *id = strtok_r(NULL, " ", &save), *path = strtok_r(NULL, " ", &save);
			char *max = strtok_r(NULL, " ", &save), *queue = strtok_r(NULL, " ", &save);
			start = nl + 1;
			if (!cmd || strcmp(cmd, "spawn") || !id || !path || !max || strtok_r(NULL, " ", &save)) {
				askr_log("WARNING", "ignoring bad control line");
				continue;
			}
			worker_config cfg = {
				.worker_id = (uint32_t)strtoul(id, NULL, 10), .generation = generation,
				.max_requests = strtoul(max, NULL, 10), .channel_path = path,
				.queue_fd = queue ? atoi(queue) : -1,
			};
			if (nkids == kids_cap) {
				kids_cap = kids_cap ? kids_cap * 2 : 16;
				kids = realloc(kids, kids_cap * sizeof(*kids));
				if (!kids) {
					askr_log("ERROR", "out of memory");
					return 1;
				}
			}
			pid_t pid = fork();
			if (pid == 0) {
				/* Worker: drop the zygote's plumbing, restore what we changed. SIGPIPE stays
				 * ignored on purpose: a vanished front must be an EPIPE, not a silent death. */
				signal(SIGCHLD, SIG_DFL);
				close(g_sigchld_pipe[0]);
				close(g_sigchld_pipe[1]);
				close(ctl_fd);
				free(kids);
				return worker_run(&cfg);
			}
			if (pid < 0) {
				askr_log("ERROR", "fork: %s", strerror(errno));
				ctl_send(ctl_fd, "exited %u 0 1 0\n", cfg.worker_id);
				continue;
			}
			kids[nkids++] = (child_entry){ pid, cfg.worker_id };
			ctl_send(ctl_fd, "spawned %u %d\n", cfg.worker_id, (int)pid);
		}
		used -= (size_t)(start - line);
		memmove(line, start, used);
		if (used == sizeof(line) - 1) {
			askr_log("WARNING", "control line too long; dropped");
			used = 0;
		}
	}
	free(kids);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Command line and main                                               */
/* ------------------------------------------------------------------ */

/* Append one --ini KEY=VALUE as an ini line. Like php-cli's -d, a value starting with a
 * non-alphanumeric character is quoted so the ini scanner takes it literally. */
static bool ini_append(char **buf, size_t *len, size_t *cap, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (strchr(kv, '\n') || eq == kv) {
		return false;
	}
	size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
	const char *val = eq ? eq + 1 : "1";
	bool quote = *val && !isalnum((unsigned char)*val) && *val != '"' && *val != '\'';
	if (!grow(buf, cap, *len + klen + strlen(val) + 6)) {
		return false;
	}
	*len += (size_t)sprintf(*buf + *len, "%.*s=%s%s%s\n", (int)klen, kv, quote ? "\"" : "", val,
		quote ? "\"" : "");
	return true;
}

/* The zygote loop (and, after fork, the worker) inside a block that catches PHP bailouts,
 * as php_cli.c's main() does; a bailout reaching here is a bug, not a request error. */
static int run_guarded(int ctl_fd, uint32_t generation)
{
	volatile int rc = 1;
	zend_first_try {
		rc = zygote_run(ctl_fd, generation);
	} zend_catch {
		askr_log("ERROR", "unexpected PHP bailout outside a request");
		rc = 1;
	} zend_end_try();
	return rc;
}

/* Map the master's scoreboard file once, in the zygote: every worker inherits the mapping. */
static bool scoreboard_map(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (fd < 0) {
		return false;
	}
	if (fstat(fd, &st) < 0 || st.st_size < 16) {
		close(fd);
		errno = EINVAL;
		return false;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		return false;
	}
	g_scoreboard = p;
	g_scoreboard_slots = (size_t)st.st_size / 16;
	return true;
}

static void usage(void)
{
	fputs("usage: askr-php --zygote --control-fd FD --generation G [--ini-file PATH]\n"
		"                [--ini KEY=VALUE]... [--mode classic] [--worker-script PATH]\n"
		"                [--worker-log-name NAME] [--scoreboard PATH]\n", stderr);
}

int main(int argc, char **argv)
{
	int ctl_fd = -1, rc = 1;
	bool zygote = false, sapi_started = false, module_started = false;
	unsigned long generation = 0;
	const char *ini_file = NULL, *mode = "classic", *log_name = "php", *scoreboard = NULL;
	char *ini = NULL;
	size_t ini_len = 0, ini_cap = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--zygote")) { zygote = true; continue; }
		if (!v) { usage(); return 2; }
		i++;
		if (!strcmp(a, "--control-fd")) ctl_fd = atoi(v);
		else if (!strcmp(a, "--generation")) generation = strtoul(v, NULL, 10);
		else if (!strcmp(a, "--ini-file")) ini_file = v;
		else if (!strcmp(a, "--mode")) mode = v;
		else if (!strcmp(a, "--worker-script")) { /* worker mode: not implemented yet */ }
		else if (!strcmp(a, "--worker-log-name")) log_name = v;
		else if (!strcmp(a, "--scoreboard")) scoreboard = v;
		else if (!strcmp(a, "--ini")) {
			if (!ini_append(&ini, &ini_len, &ini_cap, v)) {
				fprintf(stderr, "askr-php: bad --ini %s\n", v);
				return 2;
			}
		} else { usage(); return 2; }
	}
	if (!zygote || ctl_fd < 0) {
		usage();
		return 2;
	}
	snprintf(g_log_base, sizeof(g_log_base), "%s", log_name);
	snprintf(g_log_name, sizeof(g_log_name), "%s-zygote", g_log_base);
	fcntl(ctl_fd, F_SETFD, FD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN);   /* a dead peer is an EPIPE we handle, not a kill */

	if (strcmp(mode, "classic")) {
		ctl_send(ctl_fd, "failed mode %s is not supported yet\n", mode);
		goto out;
	}
	if (scoreboard && !scoreboard_map(scoreboard)) {
		ctl_send(ctl_fd, "failed cannot map the scoreboard %s: %s\n", scoreboard, strerror(errno));
		goto out;
	}

	/* Engine startup, in the order of php_cli.c's main(). */
	zend_signal_startup();
	sapi_startup(&askr_sapi_module);
	sapi_started = true;
	askr_sapi_module.ini_entries = ini;                 /* parsed after php.ini: they win */
	askr_sapi_module.php_ini_path_override = (char *)ini_file;
	if (askr_sapi_module.startup(&askr_sapi_module) == FAILURE) {
		ctl_send(ctl_fd, "failed php_module_startup failed (see stderr)\n");
		goto out;
	}
	module_started = true;
	/* Like php-fpm (fpm_main.c): do not chdir into each script's directory. That is three
	 * syscalls per request; the master starts us in the document root instead. */
	SG(options) |= SAPI_OPTION_NO_CHDIR;

	rc = run_guarded(ctl_fd, (uint32_t)generation);

out:
	/* Unwind in reverse, for the zygote and for each worker alike. */
	if (module_started) {
		php_module_shutdown();
	}
	if (sapi_started) {
		sapi_shutdown();
	}
	free(ini);
	return rc;
}
