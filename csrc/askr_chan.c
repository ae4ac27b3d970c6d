/*
 * askr_chan.c: the PHP-free half of askr-php (askr_chan.h says why the seam is here): the
 * scoreboard mapping, logging, raw I/O, the channel reader and response frames, the REQUEST
 * decoder, taking requests from the front's queue, and the worker state W. It includes no PHP
 * header and uses nothing outside libc, so it builds without php-config and links on its own
 * (a fuzzer for parse_request() needs only this file).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "askr_chan.h"

askr_scoreboard g_scoreboard;
askr_log_config g_log = { .base = "php", .name = "php-zygote" };
askr_worker W;

/* ------------------------------------------------------------------ */
/* Scoreboard                                                          */
/* ------------------------------------------------------------------ */

bool scoreboard_map(const char *path)
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
	g_scoreboard.words = p;
	g_scoreboard.slots = (size_t)st.st_size / (SB_WORDS * sizeof(uint64_t));
	return true;
}

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

/* {"time":"…Z","level":…,"component":…,"message":…}: the shape of askr/log.py's JSON lines. */
static void log_line_json(const struct timespec *ts, const char *level, const char *msg, size_t len)
{
	struct tm tm;
	char head[192];
	gmtime_r(&ts->tv_sec, &tm);
	int n = snprintf(head, sizeof(head),
		"{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"component\":\"%s\",\"message\":\"",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts->tv_nsec / 1000000, level, g_log.name);
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

/* A record's start: the time, level and name prefix in `head` (its length returned), or, in
 * JSON mode, the whole record written at once (0 returned: nothing left to do). */
static int log_head(char *head, size_t size, const char *level, const char *msg, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (g_log.json) {
		log_line_json(&ts, level, msg, len);
		return 0;
	}
	localtime_r(&ts.tv_sec, &tm);
	int n = snprintf(head, size, "%04d-%02d-%02d %02d:%02d:%02d,%03ld %s [%s] ",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, level, g_log.name);
	return n < 0 ? 0 : n;
}

void log_line(const char *level, const char *msg, size_t len)
{
	char head[160];
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r')) {
		len--;
	}
	int n = log_head(head, sizeof(head), level, msg, len);
	if (n == 0) {
		return;
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

void log_block(const char *level, const char *msg, size_t len)
{
	char head[160];
	while (len > 0 && msg[len - 1] == '\n') {
		len--;
	}
	int n = log_head(head, sizeof(head), level, msg, len);
	if (n == 0) {
		return;
	}
	size_t lines = 1;
	for (size_t i = 0; i < len; i++) {
		lines += msg[i] == '\n';
	}
	char *out = malloc(len + lines * ((size_t)n + 1) + 1);
	if (!out) {
		return;
	}
	size_t j = 0;
	const char *p = msg, *end = msg + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		memcpy(out + j, head, (size_t)n);
		j += (size_t)n;
		memcpy(out + j, p, l);
		j += l;
		out[j++] = '\n';
		p += l + 1;
	}
	write_all(STDERR_FILENO, out, j);
	free(out);
}

void askr_log(const char *level, const char *fmt, ...)
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
/* Raw I/O                                                             */
/* ------------------------------------------------------------------ */

bool write_all_iov(int fd, struct iovec *iov, int cnt)
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

/* ------------------------------------------------------------------ */
/* Channel                                                             */
/* ------------------------------------------------------------------ */

int chan_read(askr_chan *c, char *dst, size_t n)
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

int chan_read_header(askr_chan *c, uint8_t *type, uint32_t *len)
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

int channel_connect(const char *path)
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

bool out_flush(askr_chan *c)
{
	out_close_body(c);
	bool ok = c->dead || write_all(c->fd, c->out, c->out_len);
	c->out_len = 0;
	if (!ok) {
		c->dead = true;
	}
	return !c->dead;
}

/* ------------------------------------------------------------------ */
/* The request: REQUEST decoding and the body frames                   */
/* ------------------------------------------------------------------ */

bool parse_request(askr_request *r, uint32_t len)
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

/* Decode a REQUEST payload of `len` bytes from the channel (header already read). False on a
 * malformed frame. */
static bool decode_request(askr_request *r, uint32_t len)
{
	if (len == 0 || !grow(&r->payload, &r->payload_cap, len + 1)
		|| chan_read(r->chan, r->payload, len) < 0) {
		return false;
	}
	return parse_request(r, len);
}

const askr_kv *find_param(const askr_request *r, const char *name, size_t len)
{
	for (uint32_t i = 0; i < r->nparams; i++) {
		if (r->kv[i].name_len == len && !memcmp(r->kv[i].name, name, len)) {
			return &r->kv[i];
		}
	}
	return NULL;
}

bool next_body_frame(askr_request *r)
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
			W.stop = true;         /* may arrive at any frame boundary */
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

void drain_body(askr_request *r)
{
	do {
		if (r->body_left && chan_read(r->chan, NULL, r->body_left) < 0) {
			r->body_done = true;
		}
		r->body_left = 0;
	} while (next_body_frame(r));
}

/* ------------------------------------------------------------------ */
/* Worker: frames of its own, taking requests, stopping                */
/* ------------------------------------------------------------------ */

bool channels_open(void)
{
	char *paths = strdup(W.cfg->channel_paths), *save = NULL;
	W.spare_rbuf = malloc(READ_BUF_SIZE);
	if (!paths || !W.spare_rbuf) {
		askr_log("ERROR", "out of memory");
		return false;
	}
	for (char *path = strtok_r(paths, ",", &save); path; path = strtok_r(NULL, ",", &save)) {
		if (W.nchans == MAX_FRONTS) {
			askr_log("ERROR", "more than %d channel paths", MAX_FRONTS);
			return false;
		}
		askr_chan *c = &W.chans[W.nchans];
		W.chan_paths[W.nchans++] = path;
		c->fd = channel_connect(path);
		if (c->fd < 0) {
			askr_log("ERROR", "cannot connect to %s: %s", path, strerror(errno));
			return false;
		}
		/* Untouched pages cost nothing: only the channels that carry bodies fill theirs. */
		c->rbuf = malloc(READ_BUF_SIZE);
		c->body_at = SIZE_MAX;
		if (!c->rbuf || !out_reserve(c, 2 * OUT_HIGH_WATER)) {
			askr_log("ERROR", "out of memory");
			return false;
		}
	}
	if (W.nchans == 0) {
		askr_log("ERROR", "no channel path");
		return false;
	}
	W.chan = &W.chans[0];
	return true;
}

static bool hello_on(askr_chan *c)
{
	char hello[FRAME_HDR + 12];
	hello[0] = F_HELLO;
	put_u32(hello + 1, 12);
	put_u32(hello + 5, W.cfg->worker_id);
	put_u32(hello + 9, (uint32_t)getpid());
	put_u32(hello + 13, W.cfg->generation);
	if (!out_reserve(c, sizeof(hello))) {
		return false;
	}
	memcpy(c->out + c->out_len, hello, sizeof(hello));
	c->out_len += sizeof(hello);
	return out_flush(c);
}

bool send_hello(void)
{
	for (uint32_t i = 0; i < W.nchans; i++) {
		if (!hello_on(&W.chans[i])) {
			askr_log("ERROR", "cannot send HELLO to %s: %s", W.chan_paths[i], strerror(errno));
			return false;
		}
	}
	W.hello_sent = true;
	return true;
}

/* The idle wait's epoll set (made on first use, after the channels): the queue as
 * EPOLLEXCLUSIVE, so a request wakes one idle worker rather than all of them (poll() on a
 * shared socket wakes every waiter, and all but one then find it empty: a herd of N per
 * request), and each channel, where STOP or a restarted front shows. `tag` 0 is the queue,
 * i + 1 channel i. Not made yet: nothing to do. */
static bool idle_watch(int op, int fd, uint32_t events, uint32_t tag)
{
	if (W.idle_epfd <= 0) {
		return true;
	}
	struct epoll_event ev = { .events = events, .data.u32 = tag };
	return epoll_ctl(W.idle_epfd, op, fd, &ev) == 0 || op == EPOLL_CTL_DEL;
}

static bool idle_wait_open(int queue_fd)
{
	W.idle_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (W.idle_epfd < 0 || !idle_watch(EPOLL_CTL_ADD, queue_fd, EPOLLIN | EPOLLEXCLUSIVE, 0)) {
		askr_log("ERROR", "epoll: %s", strerror(errno));
		return false;
	}
	for (uint32_t i = 0; i < W.nchans; i++) {
		if (!idle_watch(EPOLL_CTL_ADD, W.chans[i].fd, EPOLLIN, i + 1)) {
			askr_log("ERROR", "epoll_ctl: %s", strerror(errno));
			return false;
		}
	}
	return true;
}

/* A front closed our channel while we were idle: it restarted (the master keeps its socket
 * listening, so the new process accepts us), or it is stopping (then the queue ends too).
 * Connect again and say HELLO, so a front's death costs only its own connections. */
static bool channel_reconnect(uint32_t i)
{
	askr_chan *c = &W.chans[i];
	idle_watch(EPOLL_CTL_DEL, c->fd, 0, i + 1);  /* before close: a child PHP forked may hold it */
	close(c->fd);
	c->rpos = c->rlen = 0;
	c->out_len = 0;
	c->body_at = SIZE_MAX;
	c->dead = false;
	c->fd = channel_connect(W.chan_paths[i]);
	if (c->fd < 0) {
		askr_log("WARNING", "front channel %s closed, and it cannot be reached again: %s", W.chan_paths[i],
			strerror(errno));
		return false;
	}
	if (!hello_on(c)) {
		askr_log("WARNING", "cannot send HELLO to %s: %s", W.chan_paths[i], strerror(errno));
		return false;
	}
	if (!idle_watch(EPOLL_CTL_ADD, c->fd, EPOLLIN, i + 1)) {
		askr_log("ERROR", "epoll_ctl: %s", strerror(errno));
		return false;
	}
	return true;
}

void report_boot_failure(const char *why)
{
	size_t len = strlen(why);
	if (len > 4000) {
		len = 4000;
	}
	askr_chan *c = &W.chans[0];    /* one front is enough: it relays it to the master */
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

uint8_t end_flags(void)
{
	if (W.must_exit) {
		return END_FLAG_EXITING;
	}
	/* Exactly at the quota: the master starts a replacement, and stops us once it is ready,
	 * so ready capacity never dips while workers recycle. */
	return W.cfg->max_requests && W.served == W.cfg->max_requests ? END_FLAG_QUOTA : 0;
}

/* The worker's anonymous resident memory in bytes (RssAnon), 0 if unknown. */
static uint64_t memory_anon_bytes(void)
{
	/* statm's resident minus shared (file-backed and shmem pages: libraries, OPcache's shared
	 * memory) is RssAnon: the heap this process holds, PHP's and C libraries' alike. Opened once
	 * per worker (after fork: /proc/self is whoever opened it); pread re-reads it (~1 us). */
	static int fd = -1;
	char buf[128];
	unsigned long size, resident, shared;
	if (fd < 0 && (fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)) < 0) {
		return 0;
	}
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0) {
		return 0;
	}
	buf[n] = '\0';
	if (sscanf(buf, "%lu %lu %lu", &size, &resident, &shared) != 3 || shared > resident) {
		return 0;
	}
	return (uint64_t)(resident - shared) * (uint64_t)sysconf(_SC_PAGESIZE);
}

void recycle_check(void)
{
	if (!W.max_memory || W.recycle_asked || W.must_exit || W.stop || W.chan->dead
		|| (W.cfg->max_requests && W.served >= W.cfg->max_requests)) {
		return;                    /* no limit, or already on its way out */
	}
	uint64_t used = memory_anon_bytes();
	if (used <= W.max_memory) {
		return;
	}
	/* Like max_requests: the master starts a replacement and retires us once it is ready; we
	 * serve on meanwhile, so capacity never dips. The client already has its response. */
	W.recycle_asked = true;
	askr_chan *c = W.chan;
	if (out_reserve(c, FRAME_HDR + 9)) {
		out_frame_header(c, F_RECYCLE, 9);
		c->out[c->out_len] = RECYCLE_MAX_MEMORY;
		put_u64(c->out + c->out_len + 1, used);
		c->out_len += 9;
		out_flush(c);
	}
}

bool stop_requested(void)
{
	return W.stop || scoreboard_stop_requested(W.cfg->worker_id);
}

/* Frames the front sent on the channel while no request was reading it: only STOP is valid.
 * False on anything else (or EOF). */
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
		W.stop = true;
	}
	return true;
}

/* Input on idle channel i: STOP frames, or the front gone (reconnect). False: stop. */
static bool idle_channel_input(uint32_t i)
{
	askr_chan *c = &W.chans[i];
	ssize_t r;
	do {
		r = read(c->fd, c->rbuf, READ_BUF_SIZE);
	} while (r < 0 && errno == EINTR);
	if (r < 0 && errno == EAGAIN) {
		return true;
	}
	if (r <= 0) {
		return channel_reconnect(i);
	}
	c->rpos = 0;
	c->rlen = (size_t)r;
	return consume_idle_frames(c);
}

/* Take the next request from the queue: a SOCK_SEQPACKET socket every front writes and every
 * worker of the generation reads, so the kernel gives each message to one idle worker, first
 * come first served, whichever front took the connection (php-fpm children share one accept
 * queue alike). A message is u64 id, u8 flags, u8 front index, then frames (REQUEST, BODY...,
 * BODY_END), which become that front's channel's read buffer; with QUEUE_FLAG_BODY_ON_CHANNEL
 * the body follows on the channel instead, once the front sees our TAKEN. While idle we also
 * watch every channel, where a front sends STOP (or closes it: it restarted, reconnect).
 * 1 = took one, 0 = stop, -1 = error. */
enum { IDLE_PROBE_MS = 1000 };  /* an idle worker looks at the queue at least this often */

static int take_queued(int queue_fd, uint32_t worker_id)
{
	char hdr[QUEUE_MSG_HDR];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { W.spare_rbuf, READ_BUF_SIZE } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	struct epoll_event ev[MAX_FRONTS + 1];
	ssize_t n;

	/* A channel that broke during the last request (its front closed it: the client left
	 * mid-response) means PHP saw an abort: this worker retires. What else came on it with
	 * the last request is STOP at most. */
	if (W.chan->dead) {
		return 0;
	}
	if (!consume_idle_frames(W.chan)) {
		return -1;
	}
	if (W.idle_epfd <= 0 && !idle_wait_open(queue_fd)) {
		return -1;
	}
	for (;;) {
		if (stop_requested()) {
			return 0;
		}
		/* One wait per request before taking one, so a front that restarted is reconnected
		 * (and our answer does not go to its dead channel) and STOP is seen: the set is
		 * level-triggered, so every channel with input is in the answer, also when a request
		 * was already waiting and the wait returned at once. */
		int ready = epoll_wait(W.idle_epfd, ev, (int)W.nchans + 1, IDLE_PROBE_MS);
		if (ready < 0) {
			if (errno == EINTR) {
				continue;
			}
			askr_log("ERROR", "epoll_wait: %s", strerror(errno));
			return -1;
		}
		/* Nothing for a while: look at the queue anyway. A request's wake-up goes to one idle
		 * worker; one that exits on an error without taking it leaves it for nobody to be
		 * woken for, until the next request comes. This bounds that wait. */
		bool queued = ready == 0, leaving = false;
		for (int i = 0; i < ready; i++) {
			if (ev[i].data.u32 == 0) {
				queued = true;
			} else if (!idle_channel_input(ev[i].data.u32 - 1)) {
				leaving = true;
			}
		}
		leaving = leaving || W.stop;
		if (!queued) {
			if (leaving) {
				return 0;
			}
			continue;
		}
		/* Woken for a request and told to stop at once (a retire's STOP came with it): take
		 * it all the same, then stop. The kernel woke only this worker for it; left in the
		 * queue, it would wait for the next request to wake another. */
		n = recvmsg(queue_fd, &msg, MSG_DONTWAIT);
		if (n >= 0) {
			break;
		}
		if (errno != EAGAIN && errno != EINTR) {      /* EAGAIN: another worker took it first */
			askr_log("ERROR", "recvmsg: %s", strerror(errno));
			return -1;
		}
		if (leaving) {
			return 0;
		}
	}
	if (n == 0) {
		return 0;                          /* the queue is closed: askr is stopping */
	}
	if (n < QUEUE_MSG_HDR || (msg.msg_flags & MSG_TRUNC) || (uint8_t)hdr[9] >= W.nchans) {
		askr_log("ERROR", "bad queue message (%zd bytes%s, front %u)", n,
			(msg.msg_flags & MSG_TRUNC) ? ", truncated" : "", (unsigned)(uint8_t)hdr[9]);
		return -1;
	}
	uint64_t id = get_u64(hdr);
	scoreboard_set(worker_id, id);
	askr_chan *c = &W.chans[(uint8_t)hdr[9]];
	char *rbuf = c->rbuf;              /* empty: idle input was consumed above */
	c->rbuf = W.spare_rbuf;
	W.spare_rbuf = rbuf;
	c->rpos = 0;
	c->rlen = (size_t)n - QUEUE_MSG_HDR;
	W.chan = c;
	W.req.chan = c;
	/* TAKEN goes out with the response (one write), or now if the front must stream the body.
	 * It echoes the flags, so a front that does not know the id (it restarted) can tell that
	 * we wait for a body it will never send. */
	if (!out_reserve(c, FRAME_HDR + 9)) {
		return -1;
	}
	out_frame_header(c, F_TAKEN, 9);
	put_u64(c->out + c->out_len, id);
	c->out[c->out_len + 8] = hdr[8];
	c->out_len += 9;
	if ((hdr[8] & QUEUE_FLAG_BODY_ON_CHANNEL) && !out_flush(c)) {
		return -1;
	}
	return 1;
}

int next_request(void)
{
	const worker_config *cfg = W.cfg;
	uint8_t type;
	uint32_t len;
	struct timespec ts;

	if (cfg->queue_fd >= 0) {
		int took = take_queued(cfg->queue_fd, cfg->worker_id);
		if (took <= 0) {
			return took;
		}
	} else if (stop_requested()) {
		return 0;
	}
	for (;;) {
		int rc = chan_read_header(W.chan, &type, &len);
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
		W.stop = true;
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
		W.req_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);  /* PHP's thread: not the watchdog's, and cheaper */
	}
	W.req_mono_ns = clock_ns(CLOCK_MONOTONIC);   /* the scoreboard's duration, the watchdog's start */
	return 1;
}

void request_done(uint64_t peak_bytes)
{
	volatile uint64_t *slot = scoreboard_slot(W.cfg->worker_id);
	if (slot) {
		slot[SB_LAST_US] = (clock_ns(CLOCK_MONOTONIC) - W.req_mono_ns) / 1000u;
		slot[SB_LAST_CPU_US] = (clock_ns(CLOCK_THREAD_CPUTIME_ID) - W.req_cpu_ns) / 1000u;
		slot[SB_LAST_PEAK] = peak_bytes;
	}
}
