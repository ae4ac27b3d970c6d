/*
 * askr_sapi.c: askr's SAPI -- the hooks PHP calls (output, headers, the request body,
 * $_SERVER, getenv, logging), the module table, starting and finishing a PHP request, classic
 * mode's loop, and the PHP functions askr adds for scripts. This is where PHP meets the
 * transport: the hooks turn PHP's calls into frames through askr_chan.h, and everything the
 * SAPI keeps per request is the one askr_request reached through SG(server_context), as in
 * nginx unit's nxt_php_sapi.c. Request semantics follow php-fpm (sapi/fpm/fpm/fpm_main.c),
 * what our users migrate from; the module table follows sapi/embed/php_embed.c.
 */

#define _GNU_SOURCE   /* memrchr (used by PHP headers) */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include "askr.h"

/* ------------------------------------------------------------------ */
/* Request state: the askr_request in SG(server_context)               */
/* ------------------------------------------------------------------ */

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
	if (W.script) {           /* worker mode */
		/* FRANKENPHP_WORKER: worker scripts written for FrankenPHP/Octane look for it. */
		register_one("ASKR_WORKER", "1", 1, arr);
		register_one("FRANKENPHP_WORKER", "1", 1, arr);
		if (W.app_base) {
			register_one("ASKR_APP_BASE", W.app_base, strlen(W.app_base), arr);
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
			snprintf(W.last_error, sizeof(W.last_error), "%s", message);
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
sapi_module_struct askr_sapi_module = {
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
void request_info_fill(askr_request *r)
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
bool request_begin(askr_request *r)
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
void response_end(askr_request *r, uint8_t flags)
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
void request_finish(askr_request *r, bool started, uint8_t flags)
{
	/* the peak before shutdown frees it all (and resets it for the next request) */
	uint64_t peak = started && !r->is_boot ? (uint64_t)zend_memory_peak_usage(false) : 0;
	if (started) {
		php_request_shutdown(NULL);    /* flushes output and sends headers via our hooks */
	}
	if (!r->is_boot) {
		response_end(r, flags);
		request_done(peak);
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

int classic_loop(void)
{
	if (!send_hello()) {
		return 1;
	}
	for (;;) {
		int rc = next_request();
		if (rc <= 0) {
			return rc < 0 ? 1 : 0;
		}
		watchdog_request_began();
		serve_classic(&W.req);
		scoreboard_set(W.cfg->worker_id, 0);
		watchdog_request_ended();
		if (W.chan->dead) {
			return 0;                      /* front vanished mid-request */
		}
		if (W.must_exit) {
			return 1;
		}
		recycle_check();                   /* the client has its response */
	}
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
const zend_function_entry askr_functions[] = {
	ZEND_RAW_FENTRY("askr_handle_request", zif_askr_handle_request, arginfo_askr_handle_request, 0)
	ZEND_RAW_FENTRY("frankenphp_handle_request", zif_askr_handle_request, arginfo_askr_handle_request, 0)
	ZEND_RAW_FENTRY("fastcgi_finish_request", zif_fastcgi_finish_request, arginfo_fastcgi_finish_request, 0)
	ZEND_RAW_FENTRY("frankenphp_finish_request", zif_fastcgi_finish_request, arginfo_fastcgi_finish_request, 0)
	ZEND_RAW_FENTRY("getallheaders", zif_getallheaders, arginfo_getallheaders, 0)
	ZEND_RAW_FENTRY("apache_request_headers", zif_getallheaders, arginfo_getallheaders, 0)
	ZEND_RAW_FENTRY("headers_send", zif_headers_send, arginfo_headers_send, 0)
	ZEND_FE_END
};
