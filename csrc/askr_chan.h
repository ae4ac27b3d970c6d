/*
 * askr_chan.h: the PHP-free half of askr-php -- the wire (docs/internals.md), the scoreboard,
 * logging, the channel to the front, the request queue, the REQUEST decoder and the worker's
 * state. Nothing here includes a PHP header: askr_chan.c compiles without php-config's include
 * flags (setup.py builds it so), which keeps SG()/PG() out of the transport and lets
 * parse_request() be fuzzed on its own. askr.h adds the PHP side.
 *
 * Helpers that run on every request (the codec, the scoreboard stores, out_body() on every
 * PHP ub_write) are static inline here, so they stay inlined in every file that calls them.
 */

#ifndef ASKR_CHAN_H
#define ASKR_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Wire constants (docs/internals.md, askr/bridge/wire.py)             */
/* ------------------------------------------------------------------ */

enum {
	F_REQUEST = 0x01, F_BODY = 0x02, F_BODY_END = 0x03, F_STOP = 0x04, /* front -> worker */
	F_HELLO = 0x10, F_HEAD = 0x11, F_RESP_BODY = 0x12, F_END = 0x13,    /* worker -> front */
	F_TAKEN = 0x14, F_EARLY_HINTS = 0x15, F_BOOT_FAILED = 0x16, F_RECYCLE = 0x17,
};
#define RECYCLE_MAX_MEMORY 1    /* F_RECYCLE's reason: the worker's memory is over max_memory */
#define END_FLAG_EXITING 0x01   /* the worker exits after this response */
#define END_FLAG_QUOTA   0x02   /* max_requests reached: replace me, I serve until told to stop */
#define EXIT_BOOT_FAILED 3      /* worker mode: the script never reached askr_handle_request() */
#define QUEUE_MSG_HDR 10              /* u64 request id, u8 flags, u8 the front's index */
#define QUEUE_FLAG_BODY_ON_CHANNEL 0x01
#define MAX_FRONTS 64                 /* [server] fronts is capped at this (askr/config.py) */
#define FRAME_HDR 5

#define READ_BUF_SIZE   (256 * 1024) /* channel read buffer; also holds one queue message (MAX_QUEUE_MESSAGE) */
#define OUT_HIGH_WATER  (64 * 1024)  /* buffered response bytes that trigger a write */
#define OUT_DIRECT      (64 * 1024)  /* ub_write chunks this big skip the copy (writev) */

/* A clock's reading in nanoseconds. */
static inline uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Big-endian codec. */
static inline void put_u16(char *p, uint16_t v) { p[0] = (char)(v >> 8); p[1] = (char)v; }
static inline void put_u32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24); p[1] = (char)(v >> 16); p[2] = (char)(v >> 8); p[3] = (char)v;
}
static inline void put_u64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (char)v;
		v >>= 8;
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
static inline uint64_t get_u64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) {
		v = (v << 8) | (uint8_t)p[i];
	}
	return v;
}

/* ------------------------------------------------------------------ */
/* Scoreboard                                                          */
/* ------------------------------------------------------------------ */

/* The scoreboard: a slot of native u64 words per worker id, shared with the front and the
 * master (mmap of the master's file; askr/bridge/scoreboard.py). A worker writes the id of the
 * queued request it took, and 0 when done, so the front knows which request a worker that died
 * was holding; the pid tells the front the slot is still that worker's. The front sets the stop
 * word to retire the worker (a busy worker sees it without reading its channel). Plain stores:
 * no syscalls. */
enum {
	SB_REQUEST, SB_PID, SB_STOP, SB_SERVED, SB_ERRORS,
	SB_STARTED,                   /* when the request held began, Unix time in microseconds */
	SB_URI,                       /* its REQUEST_URI, NUL-terminated, SB_URI_BYTES at most */
	/* The latest finished request (php-fpm's "request duration", "last request cpu" and
	 * "last request memory"): written once it is over, read by /api/status?full. */
	SB_LAST_US = SB_URI + 16,     /* its wall-clock duration, µs */
	SB_LAST_CPU_US,               /* user + system CPU PHP's thread used for it, µs */
	SB_LAST_PEAK,                 /* PHP's peak memory during it (memory_get_peak_usage()), bytes */
	SB_SLOWLOGGED,                /* requests the slowlog logged (written by the watchdog thread only) */
	SB_DENIED,                    /* syscalls the sandbox denied (askr_sandbox.c's SIGSYS handler, atomic) */
	SB_WORDS,
};
#define SB_URI_BYTES (16 * sizeof(uint64_t))

typedef struct {
	volatile uint64_t *words;     /* NULL: no --scoreboard */
	size_t slots;
} askr_scoreboard;
extern askr_scoreboard g_scoreboard;

/* Map the master's scoreboard file once, in the zygote: every worker inherits the mapping. */
bool scoreboard_map(const char *path);

static inline volatile uint64_t *scoreboard_slot(uint32_t worker_id)
{
	return g_scoreboard.words && worker_id < g_scoreboard.slots ? g_scoreboard.words + SB_WORDS * worker_id : NULL;
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
		slot[SB_LAST_US] = 0;
		slot[SB_LAST_CPU_US] = 0;
		slot[SB_LAST_PEAK] = 0;
		slot[SB_SLOWLOGGED] = 0;
		slot[SB_DENIED] = 0;
		slot[SB_PID] = (uint64_t)getpid();
	}
}

static inline bool scoreboard_stop_requested(uint32_t worker_id)
{
	volatile uint64_t *slot = scoreboard_slot(worker_id);
	return slot && slot[SB_STOP];
}

/* ------------------------------------------------------------------ */
/* Logging: one line per record on stderr, same shape as the Python side */
/* ------------------------------------------------------------------ */

typedef struct {
	char base[32];                /* --worker-log-name */
	char name[64];                /* this process's component: "<base>-zygote", "<base>#<position>" */
	bool json;                    /* --log-format json: one JSON object per line */
} askr_log_config;
extern askr_log_config g_log;

void log_line(const char *level, const char *msg, size_t len);
/* A multi-line record (a backtrace): every line gets the log prefix (text), or the record is one
 * JSON object; either way one write, so it does not interleave with other processes' lines. */
void log_block(const char *level, const char *msg, size_t len);
void askr_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ */
/* Raw I/O: every write survives EINTR and partial writes              */
/* ------------------------------------------------------------------ */

bool write_all_iov(int fd, struct iovec *iov, int cnt);

static inline bool write_all(int fd, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };
	return len == 0 || write_all_iov(fd, &iov, 1);
}

/* Grow-only heap buffer: per-request work reuses it, so steady state does no malloc. */
static inline bool grow(char **buf, size_t *cap, size_t need)
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
int chan_read(askr_chan *c, char *dst, size_t n);
/* Next frame header. 1 = got one, 0 = clean EOF between frames, -1 = EOF mid-header/error. */
int chan_read_header(askr_chan *c, uint8_t *type, uint32_t *len);
/* Connect to the front's channel socket. The fd, or -1 with errno set. */
int channel_connect(const char *path);

static inline bool out_reserve(askr_chan *c, size_t extra)
{
	return grow(&c->out, &c->out_cap, c->out_len + extra);
}

static inline void out_frame_header(askr_chan *c, uint8_t type, uint32_t len)
{
	char *p = c->out + c->out_len;
	p[0] = (char)type;
	put_u32(p + 1, len);
	c->out_len += FRAME_HDR;
}

/* Patch the length of the open BODY frame (drop it if empty). */
static inline void out_close_body(askr_chan *c)
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
bool out_flush(askr_chan *c);

/* Response bytes into the open BODY frame (the hot path: every PHP ub_write). False when the
 * front is gone. */
static inline bool out_body(askr_chan *c, const char *str, size_t len)
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
/* Request state: one struct, reachable from every SAPI hook via       */
/* SG(server_context) (askr_sapi.c). Classic and worker mode share it. */
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

/* Parse the `len` payload bytes already in r->payload (r->payload_cap > len). False on a
 * malformed payload. The payload is NUL-separated "name\0value\0" pairs: params, an empty
 * name, then headers (docs/internals.md). It is parsed in place: every name and value is
 * already NUL-terminated. */
bool parse_request(askr_request *r, uint32_t len);
const askr_kv *find_param(const askr_request *r, const char *name, size_t len);
/* Next BODY frame of the request. False at BODY_END (or on a broken channel). */
bool next_body_frame(askr_request *r);
/* Read (and discard) whatever the script left of the body, so the channel is clean. */
void drain_body(askr_request *r);

/* ------------------------------------------------------------------ */
/* The worker process                                                  */
/* ------------------------------------------------------------------ */

typedef struct {
	uint32_t worker_id;           /* scoreboard slot, unique among live workers */
	uint32_t position;            /* which configured worker this is (log name php#N) */
	uint32_t generation;
	unsigned long max_requests;   /* 0 = unlimited */
	const char *channel_paths;    /* every front's channel socket, comma-separated, in front order */
	int queue_fd;                 /* the request queue all fronts write, or -1: requests come on the channel */
} worker_config;

/* One worker process's state: its channel, the client request, and in worker mode the worker
 * script's own context, which is current whenever no client request is. `script` and
 * `app_base` come from the command line (main(), in the zygote; workers inherit them). */
typedef struct {
	const char *script;           /* worker mode: the worker script; NULL: classic mode */
	const char *app_base;         /* worker mode: --app-base, for $_SERVER['ASKR_APP_BASE'] */
	const worker_config *cfg;
	/* One channel to every front: the request queue is shared, and each answer goes back on
	 * the channel of the front that queued the request (its index is in the queue message). */
	askr_chan chans[MAX_FRONTS];
	char *chan_paths[MAX_FRONTS];
	uint32_t nchans;
	askr_chan *chan;              /* the channel of the request in hand (chans[0] before the first) */
	char *spare_rbuf;             /* a queue message lands here, then swaps with its channel's rbuf */
	int idle_epfd;                /* what an idle worker waits on: the queue and every channel */
	askr_request req;
	askr_request boot;
	unsigned long served;
	uint64_t req_mono_ns;         /* when the request in hand was taken (CLOCK_MONOTONIC) */
	uint64_t req_cpu_ns;          /* PHP's thread's CPU time then (CLOCK_THREAD_CPUTIME_ID) */
	bool stop;                    /* the front sent STOP: take no further request */
	bool hello_sent;
	bool in_handler;              /* askr_handle_request() is running the handler */
	bool fatal_in_handler;        /* a fatal error unwound out of the handler */
	bool must_exit;               /* PHP is unusable: exit after this response */
	uint64_t max_memory;          /* --max-memory: bytes of anonymous memory, 0 = no limit */
	bool recycle_asked;           /* RECYCLE sent: the master is replacing us */
	char last_error[1024];        /* PHP's last error line, for a boot failure report */
} askr_worker;
extern askr_worker W;

/* Connect to every front's channel socket (W.cfg->channel_paths). False, logged, on failure. */
bool channels_open(void);
/* HELLO on every channel. */
bool send_hello(void);
/* Tell the front why this worker never became ready (it relays it to the master). */
void report_boot_failure(const char *why);
/* END flags for the response being completed. */
uint8_t end_flags(void);
/* After a response is complete: over max_memory, ask (once) to be replaced (RECYCLE). */
void recycle_check(void);
bool stop_requested(void);
/* The next request, decoded into W.req. 1 = got one, 0 = stop, -1 = error. */
int next_request(void);
/* The request in hand is over: its duration, CPU time and PHP's `peak_bytes` into the scoreboard. */
void request_done(uint64_t peak_bytes);

#endif
