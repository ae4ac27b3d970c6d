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
#include "zend_exceptions.h"
#include "ext/session/php_session.h"
#include "ext/spl/spl_exceptions.h"
#include "ext/standard/head.h"

/* ------------------------------------------------------------------ */
/* Wire constants (docs/internals.md, askr/bridge/wire.py)             */
/* ------------------------------------------------------------------ */

enum {
	F_REQUEST = 0x01, F_BODY = 0x02, F_BODY_END = 0x03, F_STOP = 0x04, /* front -> worker */
	F_HELLO = 0x10, F_HEAD = 0x11, F_RESP_BODY = 0x12, F_END = 0x13,    /* worker -> front */
	F_TAKEN = 0x14, F_EARLY_HINTS = 0x15, F_BOOT_FAILED = 0x16,
};
#define END_FLAG_EXITING 0x01   /* the worker exits after this response */
#define END_FLAG_QUOTA   0x02   /* max_requests reached: replace me, I serve until told to stop */
#define EXIT_BOOT_FAILED 3      /* worker mode: the script never reached askr_handle_request() */
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

/* The scoreboard: a slot of native u64 words per worker id, shared with the front and the
 * master (mmap of the master's file). A worker writes the id of the queued request it took,
 * and 0 when done, so the front knows which request a worker that died was holding; the pid
 * tells the front the slot is still that worker's. The front sets the stop word to retire the
 * worker (a busy worker sees it without reading its channel). Plain stores: no syscalls. */
enum {
	SB_REQUEST, SB_PID, SB_STOP, SB_SERVED, SB_ERRORS,
	SB_STARTED,                   /* when the request held began, Unix time in microseconds */
	SB_URI,                       /* its REQUEST_URI, NUL-terminated, SB_URI_BYTES at most */
	SB_WORDS = SB_URI + 16,
};
#define SB_URI_BYTES (16 * sizeof(uint64_t))
static volatile uint64_t *g_scoreboard;
static size_t g_scoreboard_slots;

static inline volatile uint64_t *scoreboard_slot(uint32_t worker_id)
{
	return g_scoreboard && worker_id < g_scoreboard_slots ? g_scoreboard + SB_WORDS * worker_id : NULL;
}

static inline void scoreboard_set(uint32_t worker_id, uint64_t request_id)
{
	volatile uint64_t *slot = scoreboard_slot(worker_id);
	if (slot) {
		slot[SB_REQUEST] = request_id;
	}
}

static inline void scoreboard_claim(uint32_t worker_id)
{
	volatile uint64_t *slot = scoreboard_slot(worker_id);
	if (slot) {
		slot[SB_REQUEST] = 0;
		slot[SB_STOP] = 0;
		slot[SB_SERVED] = 0;
		slot[SB_ERRORS] = 0;
		slot[SB_PID] = (uint64_t)getpid();
	}
}

static inline bool scoreboard_stop_requested(uint32_t worker_id)
{
	volatile uint64_t *slot = scoreboard_slot(worker_id);
	return slot && slot[SB_STOP];
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
static bool g_log_json;                 /* --log-format json: one JSON object per line */

static bool write_all_iov(int fd, struct iovec *iov, int cnt);

/* {"time":"…Z","level":…,"component":…,"message":…}: the shape of askr/log.py's JSON lines. */
static void log_line_json(const struct timespec *ts, const char *level, const char *msg, size_t len)
{
	struct tm tm;
	char head[192];
	gmtime_r(&ts->tv_sec, &tm);
	int n = snprintf(head, sizeof(head),
		"{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"component\":\"%s\",\"message\":\"",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts->tv_nsec / 1000000, level, g_log_name);
	char *body = malloc(len * 6 + 1);
	if (!body) {
		return;
	}
	size_t j = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)msg[i];
		if (ch == '"' || ch == '\\') {
			body[j++] = '\\';
			body[j++] = (char)ch;
		} else if (ch == '\n') {
			body[j++] = '\\';
			body[j++] = 'n';
		} else if (ch < 0x20) {
			j += (size_t)snprintf(body + j, 7, "\\u%04x", ch);
		} else {
			body[j++] = (char)ch;
		}
	}
	struct iovec iov[3] = { { head, (size_t)n }, { body, j }, { "\"}\n", 3 } };
	write_all_iov(STDERR_FILENO, iov, 3);
	free(body);
}

static void log_line(const char *level, const char *msg, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char head[160];

	clock_gettime(CLOCK_REALTIME, &ts);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r')) {
		len--;
	}
	if (g_log_json) {
		log_line_json(&ts, level, msg, len);
		return;
	}
	localtime_r(&ts.tv_sec, &tm);
	int n = snprintf(head, sizeof(head), "%04d-%02d-%02d %02d:%02d:%02d,%03ld %s [%s] ",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, level, g_log_name);
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
/* SG(server_context). Classic and worker mode share it.               */
/* ------------------------------------------------------------------ */

static bool g_stop;                 /* the front sent STOP: take no further request */
static char g_last_error[1024];     /* PHP's last error line, for a boot failure report */

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
	const char *method, *query, *script, *php_self, *content_type, *content_length;
	const char *cookie, *authorization;

	double request_time;       /* REQUEST receipt, for REQUEST_TIME(_FLOAT) */

	uint32_t body_left;        /* unread bytes of the current BODY frame */
	bool body_done;            /* BODY_END seen */

	bool active;               /* between request_begin() and request_finish() */
	bool head_queued;
	bool finished;             /* fastcgi_finish_request(): the client has its response */
	bool is_boot;              /* worker mode: the worker script's own context, no client */
} askr_request;

/* The client request being served, or NULL (none, or the worker script's own context). */
static askr_request *current_request(void)
{
	askr_request *r = SG(server_context);
	return r && r->active && !r->is_boot ? r : NULL;
}

/* Any active context, the worker script's included (for $_SERVER and getenv). */
static askr_request *current_context(void)
{
	askr_request *r = SG(server_context);
	return r && r->active ? r : NULL;
}

/* A reason phrase PHP chose, bounded like the 1023-byte Status line php-fpm writes
 * (SAPI_CGI_MAX_HEADER_LENGTH in fpm_main.c): "Status: NNN " leaves this much. */
#define MAX_REASON 1011

/* A response's status as php-fpm hands it to nginx (fpm_main.c's sapi_cgi_send_headers): the
 * status line PHP kept from header("HTTP/1.1 403 Access Denied") unless the code is 200, else
 * a "Status: 399 Choose Your Own Adventure" header the script set, else the code alone. */
typedef struct {
	int status;
	bool from_php;               /* PHP set a status line or Status header: its phrase (even none) goes */
	const char *reason;          /* that phrase, or NULL (none); else the front adds the standard one */
	size_t reason_len;
} head_status;

/* "403 Access Denied" -> 403 and its phrase (cut at a control character); false if not NNN. */
static bool parse_cgi_status(const char *v, head_status *out)
{
	while (*v == ' ' || *v == '\t') {
		v++;
	}
	if (!isdigit((unsigned char)v[0]) || !isdigit((unsigned char)v[1]) || !isdigit((unsigned char)v[2])
		|| (v[3] && v[3] != ' ' && v[3] != '\t') || v[0] == '0') {
		return false;
	}
	out->status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
	out->from_php = true;
	const char *p = v + 3;
	while (*p == ' ' || *p == '\t') {
		p++;
	}
	size_t n = 0;
	while (p[n] && ((unsigned char)p[n] >= 0x20 || p[n] == '\t') && p[n] != 0x7f && n < MAX_REASON) {
		n++;
	}
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
		n--;
	}
	out->reason = n ? p : NULL;
	out->reason_len = n;
	return true;
}

static bool is_status_header(const sapi_header_struct *h)
{
	return h->header_len > sizeof("Status:") - 1 && !strncasecmp(h->header, "Status:", sizeof("Status:") - 1);
}

static head_status response_status(int code, zend_llist *headers)
{
	head_status st = { code > 0 && code < 1000 ? code : 200, false, NULL, 0 };
	const char *line = SG(sapi_headers).http_status_line, *sp;
	if (code != 200 && line && (sp = strchr(line, ' ')) && sp - line >= 5 && !strncasecmp(line, "HTTP/", 5)) {
		parse_cgi_status(sp + 1, &st);
		return st;
	}
	zend_llist_position pos;
	for (sapi_header_struct *h = headers ? zend_llist_get_first_ex(headers, &pos) : NULL; h;
		 h = zend_llist_get_next_ex(headers, &pos)) {
		if (is_status_header(h)) {
			parse_cgi_status(h->header + sizeof("Status:") - 1, &st);
			break;
		}
	}
	return st;
}

/* Header lines that do not go to the client: Status (it is the status line), and on a 304 the
 * Content-Type php-fpm drops too (RFC 9110 15.4.5: a 304 describes no content). */
static bool header_withheld(const sapi_header_struct *h, int status)
{
	return !h->header_len || is_status_header(h)
		|| (status == 304 && h->header_len > sizeof("Content-Type:") - 1
			&& !strncasecmp(h->header, "Content-Type:", sizeof("Content-Type:") - 1));
}

/* Queue a HEAD-shaped frame: u16 status, then the header lines joined with '\n'. A status PHP
 * set itself travels first, as the CGI "Status: NNN [reason]" line php-fpm would send nginx. */
static bool queue_headers_frame(askr_chan *c, uint8_t type, const head_status *st, zend_llist *headers)
{
	zend_llist_position pos;
	sapi_header_struct *h;
	char status_line[sizeof("Status: 000 ") + MAX_REASON];
	size_t status_len = 0, len = 2;

	if (st->from_php) {
		status_len = (size_t)snprintf(status_line, sizeof(status_line), "Status: %03d%s%.*s", st->status,
									  st->reason ? " " : "", (int)st->reason_len, st->reason ? st->reason : "");
		len += status_len + 1;
	}
	if (headers) {
		for (h = zend_llist_get_first_ex(headers, &pos); h; h = zend_llist_get_next_ex(headers, &pos)) {
			if (!header_withheld(h, st->status)) {
				len += h->header_len + 1;
			}
		}
	}
	if (len > 2) {
		len--;                 /* no separator after the last line */
	}
	if (!out_reserve(c, FRAME_HDR + len + 1)) {
		return false;
	}
	out_frame_header(c, type, (uint32_t)len);
	put_u16(c->out + c->out_len, (uint16_t)st->status);
	c->out_len += 2;
	bool first = true;
	if (status_len) {
		memcpy(c->out + c->out_len, status_line, status_len);
		c->out_len += status_len;
		first = false;
	}
	if (headers) {
		for (h = zend_llist_get_first_ex(headers, &pos); h; h = zend_llist_get_next_ex(headers, &pos)) {
			if (header_withheld(h, st->status)) {
				continue;
			}
			if (!first) {
				c->out[c->out_len++] = '\n';
			}
			first = false;
			memcpy(c->out + c->out_len, h->header, h->header_len);
			c->out_len += h->header_len;
		}
	}
	return true;
}

/* Queue the response's HEAD frame (once). */
static void queue_head(askr_request *r, int code, zend_llist *headers)
{
	if (r->head_queued) {
		return;
	}
	r->head_queued = true;
	head_status st = response_status(code, headers);
	if (!queue_headers_frame(r->chan, F_HEAD, &st, headers)) {
		r->chan->dead = true;
	}
	if (st.status >= 500) {
		volatile uint64_t *slot = scoreboard_slot(r->worker_id);
		if (slot) {
			slot[SB_ERRORS]++;     /* 5xx answers: a canary reload compares generations by them */
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
		if (type == F_STOP && len == 0) {
			g_stop = true;         /* may arrive at any frame boundary */
			continue;
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
static bool parse_request(askr_request *r, uint32_t len);

static bool decode_request(askr_request *r, uint32_t len)
{
	if (len == 0 || !grow(&r->payload, &r->payload_cap, len + 1)
		|| chan_read(r->chan, r->payload, len) < 0) {
		return false;
	}
	return parse_request(r, len);
}

/* Parse the `len` payload bytes already in r->payload (see decode_request). */
static bool parse_request(askr_request *r, uint32_t len)
{
	r->payload[len] = '\0';
	if (r->payload[len - 1] != '\0') {
		return false;
	}
	char *p = r->payload, *end = r->payload + len;
	size_t nkv = 0;
	int section = 0;

	r->method = r->query = r->script = r->php_self = NULL;
	r->content_type = r->content_length = r->cookie = r->authorization = NULL;
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
	r->finished = false;
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

/* Script output: buffered into BODY frames; outside a request (startup messages) to stderr. */
static size_t askr_ub_write(const char *str, size_t len)
{
	askr_request *r = current_request();
	if (!r) {
		write_all(STDERR_FILENO, str, len);
		return len;
	}
	if (r->finished) {
		return len;            /* after fastcgi_finish_request(): nobody is listening */
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
	if (!r || r->finished) {
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
	askr_request *r = current_context();
	const askr_kv *kv = r ? find_param(r, name, len) : NULL;
	return kv ? estrndup(kv->value, kv->value_len) : NULL;
}

/* Status and header lines become the HEAD frame; it goes out with the first write. */
static int askr_send_headers(sapi_headers_struct *headers)
{
	askr_request *r = current_request();
	if (r && !r->finished) {
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
static bool g_worker_mode;
static const char *g_worker_script;
static const char *g_app_base;

static void askr_register_variables(zval *arr)
{
	askr_request *r = current_context();
	char stackname[256];
	if (!r) {
		return;
	}
	for (uint32_t i = 0; i < r->nparams; i++) {
		register_one(r->kv[i].name, r->kv[i].value, r->kv[i].value_len, arr);
	}
	for (uint32_t i = r->nparams; i < r->nparams + r->nheaders; i++) {
		const askr_kv *kv = &r->kv[i];
		/* '_' would be ambiguous after conversion; Proxy is httpoxy. Content-Type and -Length
		 * also arrive as HTTP_CONTENT_TYPE/_LENGTH, as nginx passes every request header. */
		if (memchr(kv->name, '_', kv->name_len) || !strcasecmp(kv->name, "Proxy")) {
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
	if (g_worker_mode) {
		/* FRANKENPHP_WORKER: worker scripts written for FrankenPHP/Octane look for it. */
		register_one("ASKR_WORKER", "1", 1, arr);
		register_one("FRANKENPHP_WORKER", "1", 1, arr);
		if (g_app_base) {
			register_one("ASKR_APP_BASE", g_app_base, strlen(g_app_base), arr);
		}
	}
}

/* error_log() and PHP's own log lines, with a level the Python side understands. */
static void askr_log_message(const char *message, int syslog_type)
{
	const char *level;
	switch (syslog_type) {
		case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR:
			level = "ERROR";
			snprintf(g_last_error, sizeof(g_last_error), "%s", message);
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
	NULL,                        /* activate: nothing; proto_num stays HTTP/1.0 (see request_info_fill) */
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
	NULL,                        /* additional_functions: askr_functions, set in main() */
	NULL,                        /* input_filter_init */
};

/* ------------------------------------------------------------------ */
/* Request begin/finish                                                */
/* ------------------------------------------------------------------ */

/* SG(request_info) from a decoded REQUEST. Field choices follow fpm_main.c's init_request_info(). */
static void request_info_fill(askr_request *r)
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
	/* proto_num keeps sapi_activate()'s HTTP/1.0, as under php-fpm (which never sets it): PHP
	 * answers a bare Location header after a POST with 302, not HTTP/1.1's 303. */
	php_handle_auth_data(r->authorization);      /* sets (or clears) auth_user/password/digest */
}

/* Start a full PHP request (classic mode, and the worker script's own run). */
static bool request_begin(askr_request *r)
{
	request_info_fill(r);
	if (php_request_startup() != SUCCESS) {
		return false;
	}
	/* The first request installed Zend's signal handlers for this process; they stay installed.
	 * Without this, every request re-probes them with 7 sigaction() calls. */
	SIGG(reset) = false;
	return true;
}

/* Complete the response on the channel: HEAD (500 if PHP never got as far as sending one),
 * remaining BODY, the unread request body drained, END with `flags`, one write. */
static void response_end(askr_request *r, uint8_t flags)
{
	askr_chan *c = r->chan;
	if (r->finished) {
		return;                    /* fastcgi_finish_request() already did */
	}
	r->finished = true;
	if (!r->head_queued) {
		queue_head(r, 500, NULL);
	}
	drain_body(r);
	out_close_body(c);
	if (out_reserve(c, FRAME_HDR + 1)) {
		out_frame_header(c, F_END, 1);
		c->out[c->out_len++] = (char)flags;
	}
	out_flush(c);
}

/* End the full PHP request (if started), then complete the response. */
static void request_finish(askr_request *r, bool started, uint8_t flags)
{
	if (started) {
		php_request_shutdown(NULL);    /* flushes output and sends headers via our hooks */
	}
	if (!r->is_boot) {
		response_end(r, flags);
	}
	r->active = false;
	SG(server_context) = NULL;
}

/* A response PHP never sees (missing script), shaped like php-fpm's. */
static void respond_plain(askr_request *r, int status, const char *body, uint8_t flags)
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
	request_finish(r, false, flags);
}

/* ------------------------------------------------------------------ */
/* Worker: state, taking requests, stopping                            */
/* ------------------------------------------------------------------ */

typedef struct {
	uint32_t worker_id;           /* scoreboard slot, unique among live workers */
	uint32_t position;            /* which configured worker this is (log name php#N) */
	uint32_t generation;
	unsigned long max_requests;   /* 0 = unlimited */
	const char *channel_path;
	int queue_fd;                 /* the front's request queue, or -1: requests come on the channel */
} worker_config;

/* One worker process's state: its channel, the client request, and in worker mode the worker
 * script's own context, which is current whenever no client request is. */
static struct {
	const worker_config *cfg;
	const char *script;           /* worker mode: the worker script, else NULL */
	askr_chan chan;
	askr_request req;
	askr_request boot;
	unsigned long served;
	bool hello_sent;
	bool in_handler;              /* askr_handle_request() is running the handler */
	bool fatal_in_handler;        /* a fatal error unwound out of the handler */
	bool must_exit;               /* PHP is unusable: exit after this response */
} W;

static bool send_hello(void)
{
	char hello[FRAME_HDR + 12];
	hello[0] = F_HELLO;
	put_u32(hello + 1, 12);
	put_u32(hello + 5, W.cfg->worker_id);
	put_u32(hello + 9, (uint32_t)getpid());
	put_u32(hello + 13, W.cfg->generation);
	if (!out_reserve(&W.chan, sizeof(hello))) {
		return false;
	}
	memcpy(W.chan.out + W.chan.out_len, hello, sizeof(hello));
	W.chan.out_len += sizeof(hello);
	W.hello_sent = out_flush(&W.chan);
	if (!W.hello_sent) {
		askr_log("ERROR", "cannot send HELLO: %s", strerror(errno));
	}
	return W.hello_sent;
}

/* END flags for the response being completed. */
static uint8_t end_flags(void)
{
	if (W.must_exit) {
		return END_FLAG_EXITING;
	}
	/* Exactly at the quota: the master starts a replacement, and stops us once it is ready,
	 * so ready capacity never dips while workers recycle. */
	return W.cfg->max_requests && W.served == W.cfg->max_requests ? END_FLAG_QUOTA : 0;
}

static bool stop_requested(void)
{
	return g_stop || scoreboard_stop_requested(W.cfg->worker_id);
}

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

/* Frames the front sent on the channel while no request was reading it: only STOP is valid.
 * False on anything else (or EOF: the front is gone, which also means stop). */
static bool consume_idle_frames(askr_chan *c)
{
	while (c->rpos < c->rlen) {
		uint8_t type;
		uint32_t len;
		if (chan_read_header(c, &type, &len) != 1) {
			return false;
		}
		if (type != F_STOP || len != 0) {
			askr_log("ERROR", "protocol error: frame type 0x%02x on an idle channel", type);
			return false;
		}
		g_stop = true;
	}
	return true;
}

/* Take the next request from the front's queue (a SOCK_SEQPACKET socket all of that front's
 * workers read: the kernel gives each message to one of them, so a free worker takes the next
 * request at once, first come first served, like php-fpm children sharing an accept queue).
 * A message is u64 id, u8 flags, then frames (REQUEST, BODY..., BODY_END), which go straight
 * into the channel's read buffer; with QUEUE_FLAG_BODY_ON_CHANNEL the body follows on the
 * channel instead, once the front sees our TAKEN. While idle we also watch the channel, where
 * the front sends STOP (or closes it). 1 = took one, 0 = stop, -1 = error. */
static int take_queued(int queue_fd, askr_chan *c, uint32_t worker_id)
{
	char hdr[QUEUE_MSG_HDR];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { c->rbuf, READ_BUF_SIZE } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	for (;;) {
		if (!consume_idle_frames(c)) {
			return c->dead ? 0 : -1;
		}
		if (stop_requested()) {
			return 0;
		}
		/* A channel the front closed (its client left mid-response) must not take another
		 * request: PHP would run it with nowhere to send the answer. */
		char peek;
		if (recv(c->fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
			c->dead = true;
			return 0;
		}
		/* Non-blocking first: under load a request is usually waiting. */
		n = recvmsg(queue_fd, &msg, MSG_DONTWAIT);
		if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
			break;
		}
		if (errno == EINTR) {
			continue;
		}
		struct pollfd pfd[2] = { { queue_fd, POLLIN, 0 }, { c->fd, POLLIN, 0 } };
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			askr_log("ERROR", "poll: %s", strerror(errno));
			return -1;
		}
		if (pfd[1].revents) {
			ssize_t r;
			do {
				r = read(c->fd, c->rbuf, READ_BUF_SIZE);
			} while (r < 0 && errno == EINTR);
			if (r <= 0) {
				c->dead = true;
				return 0;                  /* the front is gone */
			}
			c->rpos = 0;
			c->rlen = (size_t)r;
		}
	}
	if (n == 0) {
		return 0;                          /* the queue is closed: askr is stopping */
	}
	if (n < 0) {
		askr_log("ERROR", "recvmsg: %s", strerror(errno));
		return -1;
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

/* The next request, decoded into W.req. 1 = got one, 0 = stop, -1 = error. */
static int next_request(void)
{
	const worker_config *cfg = W.cfg;
	uint8_t type;
	uint32_t len;
	struct timespec ts;

	if (cfg->queue_fd >= 0) {
		int took = take_queued(cfg->queue_fd, &W.chan, cfg->worker_id);
		if (took <= 0) {
			return took;
		}
	} else if (stop_requested()) {
		return 0;
	}
	for (;;) {
		int rc = chan_read_header(&W.chan, &type, &len);
		if (rc == 0) {
			return 0;                      /* front closed the channel: retire */
		}
		if (rc < 0) {
			askr_log("WARNING", "channel broken while idle");
			return 0;
		}
		if (type != F_STOP || len != 0) {
			break;
		}
		g_stop = true;
		if (cfg->queue_fd < 0) {
			return 0;
		}
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	W.req.request_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	if (type != F_REQUEST || !decode_request(&W.req, len)) {
		askr_log("ERROR", "protocol error: bad frame (type 0x%02x, %u bytes) while idle", type, len);
		return -1;
	}
	W.served++;
	volatile uint64_t *slot = scoreboard_slot(cfg->worker_id);
	if (slot) {
		/* For /api/status: what this worker is busy with, and since when. Racy reads are fine. */
		const askr_kv *uri = find_param(&W.req, "REQUEST_URI", sizeof("REQUEST_URI") - 1);
		char *dst = (char *)(uintptr_t)(slot + SB_URI);
		size_t n = uri ? uri->value_len : 0;
		if (n >= SB_URI_BYTES) {
			n = SB_URI_BYTES - 1;
		}
		if (n) {
			memcpy(dst, uri->value, n);
		}
		dst[n] = '\0';
		slot[SB_STARTED] = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
		slot[SB_SERVED] = W.served;
	}
	return 1;
}

/* ------------------------------------------------------------------ */
/* Classic mode: each request runs SCRIPT_FILENAME from the top, like php-fpm. */
/* ------------------------------------------------------------------ */

static void serve_classic(askr_request *r)
{
	struct stat st;

	if (!r->script || stat(r->script, &st) != 0 || !S_ISREG(st.st_mode)) {
		respond_plain(r, 404, "File not found.\n", end_flags());   /* FPM: "Primary script unknown" */
		return;
	}
	if (!request_begin(r)) {
		askr_log("ERROR", "php_request_startup failed; worker exits after this response");
		W.must_exit = true;
		request_finish(r, true, end_flags());
		return;
	}
	zend_file_handle fh;
	zend_stream_init_filename(&fh, r->script);
	zend_try {
		php_execute_script(&fh);
	} zend_end_try();
	zend_destroy_file_handle(&fh);
	request_finish(r, true, end_flags());
}

static int classic_loop(void)
{
	if (!send_hello()) {
		return 1;
	}
	for (;;) {
		int rc = next_request();
		if (rc <= 0) {
			return rc < 0 ? 1 : 0;
		}
		serve_classic(&W.req);
		scoreboard_set(W.cfg->worker_id, 0);
		if (W.chan.dead) {
			return 0;                      /* front vanished mid-request */
		}
		if (W.must_exit) {
			return 1;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Worker mode: the worker script boots the app once, then loops in    */
/* askr_handle_request($handler). Each handled request gets a fresh    */
/* request context inside the one long PHP request of the script: the  */
/* parts of php_request_startup/shutdown that are per-request state.   */
/* docs/worker-mode.md lists what is and is not reset.                 */
/* ------------------------------------------------------------------ */

/* Modules whose per-request state lives in their RINIT/RSHUTDOWN: filter keeps raw copies of
 * the input arrays (filter_input), session its id, status and $_SESSION. */
static zend_module_entry *g_reset_modules[2];

static void reset_modules_find(void)
{
	g_reset_modules[0] = zend_hash_str_find_ptr(&module_registry, ZEND_STRL("filter"));
	g_reset_modules[1] = zend_hash_str_find_ptr(&module_registry, ZEND_STRL("session"));
}

static void module_rshutdown(zend_module_entry *m)
{
	if (m && m->request_shutdown_func) {
		zend_try {
			m->request_shutdown_func(m->type, m->module_number);
		} zend_end_try();
	}
}

static void reset_modules_shutdown(void)
{
	/* session's RSHUTDOWN also drops user save handlers (session_set_save_handler); an app
	 * sets those once at boot, so they are kept across requests. */
	zval saved[PS_NUM_APIS];
	for (int i = 0; i < PS_NUM_APIS; i++) {
		ZVAL_COPY(&saved[i], &PS(mod_user_names).names[i]);
	}
	for (size_t i = 0; i < sizeof(g_reset_modules) / sizeof(*g_reset_modules); i++) {
		module_rshutdown(g_reset_modules[i]);
	}
	for (int i = 0; i < PS_NUM_APIS; i++) {
		zval_ptr_dtor(&PS(mod_user_names).names[i]);
		ZVAL_COPY_VALUE(&PS(mod_user_names).names[i], &saved[i]);
	}
	/* The symbol table still holds $_SESSION; the next request must not see it. */
	zend_hash_str_del(&EG(symbol_table), ZEND_STRL("_SESSION"));
}

static void reset_modules_startup(void)
{
	for (size_t i = 0; i < sizeof(g_reset_modules) / sizeof(*g_reset_modules); i++) {
		zend_module_entry *m = g_reset_modules[i];
		if (m && m->request_startup_func) {
			m->request_startup_func(m->type, m->module_number);
		}
	}
}

/* Make `r` the current context: SAPI state, output layer, superglobals. */
static bool context_begin(askr_request *r)
{
	volatile bool ok = true;
	/* Called from askr_handle_request(), but no script runs while a request starts (as under
	 * php-fpm): errors raised now say "in Unknown on line 0", not the worker script's line. */
	zend_execute_data *caller = EG(current_execute_data);
	EG(current_execute_data) = NULL;
	request_info_fill(r);
	zend_try {
		/* As php_request_startup() has them while the request's input is parsed: errors raised
		 * now are "PHP Request Startup" ones (display_startup_errors decides their display), and
		 * hooks that only run before modules activate do run (session upload progress). */
		PG(during_request_startup) = 1;
		PG(modules_activated) = 0;
		PG(in_error_log) = 0;
		PG(in_user_include) = 0;
		php_output_activate();
		PG(header_is_being_sent) = 0;
		PG(connection_status) = PHP_CONNECTION_NORMAL;
		sapi_activate();           /* headers, status, reads POST data for the POST globals */
		if (PG(expose_php)) {
			sapi_add_header(SAPI_PHP_VERSION_HEADER, sizeof(SAPI_PHP_VERSION_HEADER) - 1, 1);
		}
		if (PG(output_handler) && PG(output_handler)[0]) {
			zval handler;
			ZVAL_STRING(&handler, PG(output_handler));
			php_output_start_user(&handler, 0, PHP_OUTPUT_HANDLER_STDFLAGS);
			zval_ptr_dtor(&handler);
		} else if (PG(output_buffering)) {
			php_output_start_user(NULL, PG(output_buffering) > 1 ? PG(output_buffering) : 0,
				PHP_OUTPUT_HANDLER_STDFLAGS);
		} else if (PG(implicit_flush)) {
			php_output_set_implicit_flush(1);
		}
		php_hash_environment();    /* $_GET $_POST $_COOKIE $_FILES */
		if (!r->is_boot) {
			/* Scripts were compiled long ago, so the compiler will not create these on first
			 * use (auto_globals_jit): create them now. */
			zend_is_auto_global_str(ZEND_STRL("_SERVER"));
			zend_is_auto_global_str(ZEND_STRL("_REQUEST"));
		}
		reset_modules_startup();
	} zend_catch {
		ok = false;
	} zend_end_try();
	EG(current_execute_data) = caller;
	PG(modules_activated) = 1;
	PG(during_request_startup) = 0;  /* php_execute_script() clears it for a classic request */
	SG(sapi_started) = 1;
	return ok;
}

/* End the current context `r`: flush output and headers, write the session, free uploads and
 * the request body, drop the superglobals; for a client request, complete its response. */
static void context_end(askr_request *r)
{
	zend_try {
		php_output_end_all();
	} zend_end_try();
	reset_modules_shutdown();      /* the session is written before the client sees END */
	zend_try {
		php_output_deactivate();   /* sends the headers if nothing did yet */
	} zend_end_try();
	if (SG(request_info).request_body) {
		php_stream_close(SG(request_info).request_body);
		SG(request_info).request_body = NULL;
	}
	zend_try {
		sapi_deactivate();         /* also deletes uploaded files nobody moved */
	} zend_end_try();
	for (int i = 0; i < NUM_TRACK_VARS; i++) {
		zval_ptr_dtor(&PG(http_globals)[i]);
		ZVAL_UNDEF(&PG(http_globals)[i]);
	}
	zend_set_memory_limit(PG(memory_limit));
	if (!r->is_boot) {
		response_end(r, end_flags());
		scoreboard_set(W.cfg->worker_id, 0);
	}
	r->active = false;
	SG(server_context) = NULL;
}

/* Limits one request may raise with ini_set() (a long export, a big import) return to what the
 * worker had when it first asked for a request, so they do not carry over to every later one.
 * Other ini_set() values are kept (docs/worker-mode.md). */
static struct {
	const char *name;
	char boot[64];
	zend_string *key;
} g_request_limits[] = { { "memory_limit", "", NULL }, { "max_execution_time", "", NULL } };

static void request_limits_remember(void)
{
	for (size_t i = 0; i < sizeof(g_request_limits) / sizeof(*g_request_limits); i++) {
		const char *v = zend_ini_string(g_request_limits[i].name, strlen(g_request_limits[i].name), 0);
		snprintf(g_request_limits[i].boot, sizeof(g_request_limits[i].boot), "%s", v ? v : "");
		g_request_limits[i].key = zend_string_init_interned(g_request_limits[i].name,
			strlen(g_request_limits[i].name), 1);
	}
}

static void request_limits_restore(void)
{
	for (size_t i = 0; i < sizeof(g_request_limits) / sizeof(*g_request_limits); i++) {
		const char *v = zend_ini_string(g_request_limits[i].name, strlen(g_request_limits[i].name), 0);
		if (g_request_limits[i].key && v && strcmp(v, g_request_limits[i].boot)) {
			zend_alter_ini_entry_chars(g_request_limits[i].key, g_request_limits[i].boot,
				strlen(g_request_limits[i].boot), PHP_INI_USER, PHP_INI_STAGE_RUNTIME);
		}
	}
}

/* PHP keeps the last error for error_get_last(); one request's must not surface in the next. */
static void clear_last_error(void)
{
	if (PG(last_error_message)) {
		zend_string_release(PG(last_error_message));
		PG(last_error_message) = NULL;
	}
	if (PG(last_error_file)) {
		zend_string_release(PG(last_error_file));
		PG(last_error_file) = NULL;
	}
	PG(last_error_type) = 0;
	PG(last_error_lineno) = 0;
}

/* askr_handle_request(callable $handler): bool -- see docs/worker-mode.md. */
static PHP_FUNCTION(askr_handle_request)
{
	zend_fcall_info fci;
	zend_fcall_info_cache fcc;

	ZEND_PARSE_PARAMETERS_START(1, 1)
		Z_PARAM_FUNC(fci, fcc)
	ZEND_PARSE_PARAMETERS_END();

	if (!W.script || W.in_handler) {
		zend_throw_exception(spl_ce_RuntimeException, W.script
			? "askr_handle_request() cannot be called from inside a request handler"
			: "askr_handle_request() is only available to a worker script ([worker] script in askr.toml)", 0);
		RETURN_THROWS();
	}
	if (!W.hello_sent) {
		request_limits_remember();
		if (!send_hello()) {
			RETURN_FALSE;          /* the front is gone */
		}
	}
	if (W.must_exit || stop_requested()) {
		RETURN_FALSE;
	}
	context_end(&W.boot);
	zend_unset_timeout();          /* waiting is not execution time */
	int rc = next_request();
	if (rc <= 0) {
		if (rc < 0) {
			W.must_exit = true;
		}
		g_stop = true;             /* told to, or the queue/front is gone: this worker is done */
		context_begin(&W.boot);
		RETURN_FALSE;
	}
	if (!context_begin(&W.req)) {
		askr_log("ERROR", "could not set up a request context; worker exits after this response");
		W.must_exit = true;
		context_end(&W.req);
		context_begin(&W.boot);
		RETURN_FALSE;
	}
	zend_set_timeout(INI_INT("max_execution_time"), 0);

	zval retval;
	volatile bool bailed = false;
	fci.retval = &retval;
	W.in_handler = true;
	zend_try {
		if (zend_call_function(&fci, &fcc) == SUCCESS) {
			zval_ptr_dtor(&retval);
		}
	} zend_catch {
		bailed = true;
	} zend_end_try();
	W.in_handler = false;
	/* unclean_shutdown: a bailout happened even if something swallowed it on the way (the
	 * memory-limit error is caught and re-thrown inside the allocator, and does not always
	 * reach us as a bailout). */
	if (bailed || CG(unclean_shutdown)) {
		/* A fatal error (or timeout, or memory exhausted) unwound the handler: PHP's state is
		 * not trustworthy. Unwind the worker script too; serve_worker_script() answers this
		 * request through the normal shutdown (status 500 unless the app sent one) and exits. */
		W.fatal_in_handler = true;
		W.must_exit = true;
		zend_bailout();
	}
	if (EG(exception)) {
		/* An uncaught exception (or exit()) ends this request only: logged as PHP logs it,
		 * 500 unless output already started. The worker goes on. */
		zend_exception_error(EG(exception), E_ERROR);
		clear_last_error();
		EG(exit_status) = 0;
	}
	zend_unset_timeout();
	request_limits_restore();
	context_end(&W.req);
	context_begin(&W.boot);
	RETURN_TRUE;
}

/* Tell the front why this worker never became ready (it relays it to the master). */
static void report_boot_failure(const char *why)
{
	size_t len = strlen(why);
	if (len > 4000) {
		len = 4000;
	}
	askr_chan *c = &W.chan;
	c->out_len = 0;
	c->body_at = SIZE_MAX;
	if (out_reserve(c, FRAME_HDR + 8 + len)) {
		out_frame_header(c, F_BOOT_FAILED, (uint32_t)(8 + len));
		put_u32(c->out + c->out_len, W.cfg->worker_id);
		put_u32(c->out + c->out_len + 4, (uint32_t)getpid());
		memcpy(c->out + c->out_len + 8, why, len);
		c->out_len += 8 + len;
		out_flush(c);
	}
}

/* The worker script's own context: $_SERVER as a request for the script would have it. */
static bool boot_context_init(askr_request *r, const char *script)
{
	char cwd[4096];
	const char *base = strrchr(script, '/');
	char self[1024];
	snprintf(self, sizeof(self), "/%s", base ? base + 1 : script);
	if (!getcwd(cwd, sizeof(cwd))) {
		cwd[0] = '\0';
	}
	const char *kv[] = {
		"SCRIPT_FILENAME", script, "SCRIPT_NAME", self, "PHP_SELF", self, "DOCUMENT_ROOT", cwd,
		"SERVER_SOFTWARE", "Askr",
	};
	size_t len = 0;
	for (size_t i = 0; i < sizeof(kv) / sizeof(*kv); i++) {
		len += strlen(kv[i]) + 1;
	}
	if (!grow(&r->payload, &r->payload_cap, len + 2)) {
		return false;
	}
	char *p = r->payload;
	for (size_t i = 0; i < sizeof(kv) / sizeof(*kv); i++) {
		size_t n = strlen(kv[i]) + 1;
		memcpy(p, kv[i], n);
		p += n;
	}
	r->is_boot = true;
	r->chan = &W.chan;
	return parse_request(r, (uint32_t)len);
}

static int serve_worker_script(void)
{
	char script[4096];
	if (!realpath(W.script, script)) {
		snprintf(g_last_error, sizeof(g_last_error), "worker script %s: %s", W.script, strerror(errno));
		askr_log("ERROR", "%s", g_last_error);
		report_boot_failure(g_last_error);
		return EXIT_BOOT_FAILED;
	}
	if (!boot_context_init(&W.boot, script) || !request_begin(&W.boot)) {
		askr_log("ERROR", "could not start the worker script's request");
		report_boot_failure("php_request_startup failed");
		return EXIT_BOOT_FAILED;
	}
	reset_modules_find();
	zend_file_handle fh;
	zend_stream_init_filename(&fh, script);
	zend_try {
		php_execute_script(&fh);
	} zend_end_try();
	zend_destroy_file_handle(&fh);

	if (W.fatal_in_handler) {
		/* The handler's request is still current: shutdown functions run (frameworks render
		 * their error page there), output and headers go to that client, then END. */
		askr_log("ERROR", "fatal error in the request handler; this worker exits and is replaced");
		scoreboard_set(W.cfg->worker_id, 0);
		request_finish(&W.req, true, END_FLAG_EXITING);
		return 1;
	}
	bool booted = W.hello_sent;
	request_finish(&W.boot, true, 0);
	if (!booted) {
		const char *why = g_last_error[0] ? g_last_error
			: "the worker script ended without calling askr_handle_request()";
		report_boot_failure(why);  /* the master logs it, with what it does about it */
		return EXIT_BOOT_FAILED;
	}
	if (!W.must_exit && !stop_requested()) {
		askr_log("INFO", "worker script returned after %lu requests; a new worker replaces it", W.served);
	}
	return W.must_exit ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* PHP functions for scripts (both modes unless noted)                 */
/* ------------------------------------------------------------------ */

/* fastcgi_finish_request(): the client gets its response now; the script goes on. */
static PHP_FUNCTION(fastcgi_finish_request)
{
	ZEND_PARSE_PARAMETERS_NONE();
	askr_request *r = current_request();
	if (!r || r->finished) {
		RETURN_FALSE;
	}
	php_output_end_all();
	php_header();
	response_end(r, end_flags());  /* the quota flag must not be lost */
	RETURN_TRUE;
}

/* getallheaders(): the request headers as the client sent them. */
static PHP_FUNCTION(getallheaders)
{
	ZEND_PARSE_PARAMETERS_NONE();
	askr_request *r = current_request();
	array_init(return_value);
	if (!r) {
		return;
	}
	bool has_type = false, has_length = false;
	for (uint32_t i = r->nparams; i < r->nparams + r->nheaders; i++) {
		const askr_kv *kv = &r->kv[i];
		has_type = has_type || !strcasecmp(kv->name, "Content-Type");
		has_length = has_length || !strcasecmp(kv->name, "Content-Length");
		add_assoc_stringl_ex(return_value, kv->name, kv->name_len, (char *)kv->value, kv->value_len);
	}
	/* php-fpm builds this from its CGI params, where CONTENT_TYPE and CONTENT_LENGTH always are
	 * (empty without a body, the collected size for a chunked one): so do we. */
	const askr_kv *kv;
	if (!has_type && (kv = find_param(r, ZEND_STRL("CONTENT_TYPE")))) {
		add_assoc_stringl_ex(return_value, ZEND_STRL("Content-Type"), (char *)kv->value, kv->value_len);
	}
	if (!has_length && (kv = find_param(r, ZEND_STRL("CONTENT_LENGTH")))) {
		add_assoc_stringl_ex(return_value, ZEND_STRL("Content-Length"), (char *)kv->value, kv->value_len);
	}
}

/* headers_send(int $status = 200): int -- with a 1xx status (103 Early Hints), the headers set
 * so far go to the client now as an informational response and stay set for the final one;
 * otherwise the final headers are sent now (as FrankenPHP's function of that name). */
static PHP_FUNCTION(headers_send)
{
	zend_long status = 200;
	ZEND_PARSE_PARAMETERS_START(0, 1)
		Z_PARAM_OPTIONAL
		Z_PARAM_LONG(status)
	ZEND_PARSE_PARAMETERS_END();

	askr_request *r = current_request();
	if (!r || r->finished || SG(headers_sent) || r->head_queued) {
		RETURN_LONG(SAPI_HEADER_SEND_FAILED);
	}
	if (status >= 100 && status < 200) {
		/* Same shape as HEAD, its own frame type; flushed now: that is the point of it. */
		head_status st = { (int)status, false, NULL, 0 };
		if (!queue_headers_frame(r->chan, F_EARLY_HINTS, &st, &SG(sapi_headers).headers)
			|| !out_flush(r->chan)) {
			RETURN_LONG(SAPI_HEADER_SEND_FAILED);
		}
		RETURN_LONG(SAPI_HEADER_SENT_SUCCESSFULLY);
	}
	SG(sapi_headers).http_response_code = (int)status;
	RETURN_LONG(sapi_send_headers());
}

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_askr_handle_request, 0, 1, _IS_BOOL, 0)
	ZEND_ARG_TYPE_INFO(0, handler, IS_CALLABLE, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_fastcgi_finish_request, 0, 0, _IS_BOOL, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_getallheaders, 0, 0, IS_ARRAY, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_headers_send, 0, 0, IS_LONG, 0)
	ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, status, IS_LONG, 0, "200")
ZEND_END_ARG_INFO()

/* The frankenphp_* and apache_* names let scripts written for those servers run unmodified. */
static const zend_function_entry askr_functions[] = {
	ZEND_RAW_FENTRY("askr_handle_request", zif_askr_handle_request, arginfo_askr_handle_request, 0)
	ZEND_RAW_FENTRY("frankenphp_handle_request", zif_askr_handle_request, arginfo_askr_handle_request, 0)
	ZEND_RAW_FENTRY("fastcgi_finish_request", zif_fastcgi_finish_request, arginfo_fastcgi_finish_request, 0)
	ZEND_RAW_FENTRY("frankenphp_finish_request", zif_fastcgi_finish_request, arginfo_fastcgi_finish_request, 0)
	ZEND_RAW_FENTRY("getallheaders", zif_getallheaders, arginfo_getallheaders, 0)
	ZEND_RAW_FENTRY("apache_request_headers", zif_getallheaders, arginfo_getallheaders, 0)
	ZEND_RAW_FENTRY("headers_send", zif_headers_send, arginfo_headers_send, 0)
	ZEND_FE_END
};

/* ------------------------------------------------------------------ */
/* The worker's life                                                   */
/* ------------------------------------------------------------------ */

static int worker_run(const worker_config *cfg, const char *script)
{
	W.cfg = cfg;
	W.script = script;
	snprintf(g_log_name, sizeof(g_log_name), "%s#%u", g_log_base, cfg->position);
	W.chan.fd = channel_connect(cfg->channel_path);
	if (W.chan.fd < 0) {
		askr_log("ERROR", "cannot connect to %s: %s", cfg->channel_path, strerror(errno));
		return 1;
	}
	W.chan.rbuf = malloc(READ_BUF_SIZE);
	W.chan.body_at = SIZE_MAX;
	if (!W.chan.rbuf || !out_reserve(&W.chan, 2 * OUT_HIGH_WATER)) {
		askr_log("ERROR", "out of memory");
		return 1;
	}
	W.req.chan = &W.chan;
	W.req.worker_id = cfg->worker_id;
	scoreboard_claim(cfg->worker_id);
	/* Classic: ready now. Worker mode: ready when the script first asks for a request. */
	return script ? serve_worker_script() : classic_loop();
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
			char *position = strtok_r(NULL, " ", &save);
			start = nl + 1;
			if (!cmd || strcmp(cmd, "spawn") || !id || !path || !max || strtok_r(NULL, " ", &save)) {
				askr_log("WARNING", "ignoring bad control line");
				continue;
			}
			worker_config cfg = {
				.worker_id = (uint32_t)strtoul(id, NULL, 10), .generation = generation,
				.max_requests = strtoul(max, NULL, 10), .channel_path = path,
				.queue_fd = queue ? atoi(queue) : -1,
				.position = (uint32_t)strtoul(position ? position : id, NULL, 10),
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
				return worker_run(&cfg, g_worker_mode ? g_worker_script : NULL);
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
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)(SB_WORDS * sizeof(uint64_t))) {
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
	g_scoreboard_slots = (size_t)st.st_size / (SB_WORDS * sizeof(uint64_t));
	return true;
}

static void usage(void)
{
	fputs("usage: askr-php --zygote --control-fd FD --generation G [--ini-file PATH]\n"
		"                [--ini KEY=VALUE]... [--mode classic|worker] [--worker-script PATH]\n"
		"                [--app-base DIR]\n"
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
		else if (!strcmp(a, "--worker-script")) g_worker_script = v;
		else if (!strcmp(a, "--app-base")) g_app_base = v;
		else if (!strcmp(a, "--worker-log-name")) log_name = v;
		else if (!strcmp(a, "--scoreboard")) scoreboard = v;
		else if (!strcmp(a, "--log-format")) g_log_json = !strcmp(v, "json");
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
	/* Stop signals sent to the whole process tree (systemd's default KillMode=control-group,
	 * kill -TERM -PGID, Ctrl-C) must not kill PHP mid-request: the master turns them into the
	 * right stop (drain, or at once) through the fronts, which close channels and STOP us; it
	 * uses SIGKILL when it means it. Set before PHP starts, so Zend records them as ours, and
	 * inherited by every worker the zygote forks. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	if (!strcmp(mode, "worker")) {
		if (!g_worker_script) {
			ctl_send(ctl_fd, "failed --mode worker needs --worker-script\n");
			goto out;
		}
		g_worker_mode = true;
	} else if (strcmp(mode, "classic")) {
		ctl_send(ctl_fd, "failed unknown mode %s\n", mode);
		goto out;
	}
	if (scoreboard && !scoreboard_map(scoreboard)) {
		ctl_send(ctl_fd, "failed cannot map the scoreboard %s: %s\n", scoreboard, strerror(errno));
		goto out;
	}

	/* Engine startup, in the order of php_cli.c's main(). */
	zend_signal_startup();
	askr_sapi_module.additional_functions = askr_functions;
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
