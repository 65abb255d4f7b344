/*
 * health.c - active health checks, rise/fall hysteresis, passive
 * observation.
 *
 * Everything here runs in the control loop. Each checked server has one
 * struct hcheck (server->check) with one timer and at most one socket:
 *
 *	IDLE --timer--> CONNECT --writable--> [HANDSHAKE] [SEND] [RECV] --> IDLE
 *	                   \________ timer (check_timeout) or error _______/
 *
 * The same timer waits for the next check while idle and bounds the whole
 * check (check_timeout) while one runs. A check ends in check_done(), which
 * closes the socket with an RST (no TIME_WAIT on our side), records the
 * result in the server, feeds the rise/fall machine and reports a change
 * through server_set_health(), the only way health touches the table.
 *
 * Passive health: workers count failed connects per server; when a streak
 * reaches the backend's `fall`, they call our hook, which only wakes the
 * control loop (ev_async). There we mark such servers down; active checks
 * bring them back (after `rise` successes), or, with check = none, a retry
 * timer does after one check_interval (nginx's fail_timeout).
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "health.h"
#include "log.h"
#include "net.h"
#include "proxyproto.h"
#include "server.h"
#include "tls.h"
#include "tlsctx.h"

#define HEALTH_RBUF		1024	/* reply bytes looked at, at most */
#define HEALTH_REQ_MAX		704	/* PROXY LOCAL header + method + path
					   + host + fixed text */
#define HEALTH_MIN_INTERVAL_MS	10
#define HEALTH_REASON_MAX	192

enum hphase {
	HP_IDLE = 0,		/* waiting for the next check */
	HP_CONNECT,		/* non-blocking connect in progress */
	HP_HANDSHAKE,		/* tls: handshake in progress */
	HP_SEND,		/* http, send-expect: writing the request */
	HP_RECV,		/* http, send-expect: reading the reply */
	HP_RETRY,		/* check = none, passively down: retry timer */
	HP_STOPPED,		/* not checked (maint, or check = none) */
};

struct hcheck {
	struct server		*srv;		/* referenced while we live */
	struct health_fsm	 fsm;		/* follows srv->health */
	ev_timer		 timer;		/* next check / timeout / retry */
	ev_io			 io;		/* the check socket */
	int			 fd;		/* -1 when no check runs */
	SSL			*ssl;		/* tls checks, tls backends */
	bool			 tls_done;	/* its handshake is over: the
						   request and reply go
						   through it */
	enum hphase		 phase;
	ev_tstamp		 t_start;	/* ev_time() at check start */
	char			 req[HEALTH_REQ_MAX]; /* what SEND writes, if
						   it is ours to build */
	const char		*out;		/* what SEND writes */
	size_t			 outlen;
	size_t			 pplen;		/* check_send_proxy: header
						   bytes at the head of req */
	size_t			 sent;
	char			 rbuf[HEALTH_RBUF]; /* reply so far */
	size_t			 rlen;
	TAILQ_ENTRY(hcheck)	 entry;		/* all_checks */
};

TAILQ_HEAD(hcheck_list, hcheck);

/* One SSL_CTX per backend that uses tls checks, made when its first
 * server is added. */
struct htls {
	struct backend		*be;
	SSL_CTX			*ctx;		/* NULL if it could not be made */
	char			 err[96];	/* why not */
	struct htls		*next;
};

static struct ev_loop		*hloop;		/* the control loop */
static struct backend_list	*hbackends;	/* every backend */
static struct hcheck_list	 all_checks = TAILQ_HEAD_INITIALIZER(all_checks);
static struct htls		*tls_ctxs;
static ev_async			 passive_async;
static _Atomic(struct ev_loop *)	 async_loop;	/* read by workers */
static bool			 running;
static uint64_t			 rng_state;
static struct ratelimit		 sockerr_rl;

static void	health_timer_cb(struct ev_loop *, ev_timer *, int);
static void	health_io_cb(struct ev_loop *, ev_io *, int);

/* ------------------------------------------------------------------ */
/* The rise/fall state machine. */

void
health_fsm_init(struct health_fsm *f, int rise, int fall,
    enum server_health initial)
{
	f->state = initial;
	f->ok_streak = 0;
	f->fail_streak = 0;
	f->rise = rise > 0 ? rise : 1;
	f->fall = fall > 0 ? fall : 1;
}

/*
 * Consecutive counting, as HAProxy's rise/fall: `rise` successes in a row
 * bring a checking or down server up, `fall` failures in a row bring a
 * checking or up server down. Any other result breaks the opposite run.
 */
bool
health_fsm_step(struct health_fsm *f, bool ok)
{
	enum server_health next = f->state;

	if (ok) {
		f->fail_streak = 0;
		if (f->state != HEALTH_UP && ++f->ok_streak >= f->rise)
			next = HEALTH_UP;
	} else {
		f->ok_streak = 0;
		if (f->state != HEALTH_DOWN && ++f->fail_streak >= f->fall)
			next = HEALTH_DOWN;
	}
	if (next == f->state)
		return false;
	f->state = next;
	f->ok_streak = 0;
	f->fail_streak = 0;
	return true;
}

/* ------------------------------------------------------------------ */
/* Pure helpers. */

int
health_http_status(const char *line, size_t len)
{
	int code;

	/* "HTTP/" DIGIT "." DIGIT SP 3DIGIT [SP reason] */
	if (len < 12 || memcmp(line, "HTTP/", 5) != 0)
		return -1;
	if (line[5] < '0' || line[5] > '9' || line[6] != '.' ||
	    line[7] < '0' || line[7] > '9' || line[8] != ' ')
		return -1;
	code = 0;
	for (int i = 9; i < 12; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		code = code * 10 + (line[i] - '0');
	}
	if (code < 100)
		return -1;
	if (len > 12 && line[12] != ' ' && line[12] != '\r' &&
	    line[12] != '\n')
		return -1;
	return code;
}

/* Printable, quoted-safe copy of untrusted bytes for a log line. */
static void
escape_bytes(char *dst, size_t dstlen, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len && o + 5 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			dst[o++] = (char)c;
		} else if (c == '\r') {
			dst[o++] = '\\';
			dst[o++] = 'r';
		} else if (c == '\n') {
			dst[o++] = '\\';
			dst[o++] = 'n';
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	if (dstlen > 0)
		dst[o < dstlen ? o : dstlen - 1] = '\0';
}

/* strerror(), first letter in lower case: "connection refused". */
static void
errstr(char *dst, size_t len, int err)
{
	snprintf(dst, len, "%s", strerror(err));
	if (dst[0] >= 'A' && dst[0] <= 'Z')
		dst[0] = (char)(dst[0] - 'A' + 'a');
}

/* splitmix64; only for spreading first checks, not for security. */
static uint64_t
rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A check duration in seconds, never below HEALTH_MIN_INTERVAL_MS. */
static double
clamped_s(uint32_t ms)
{
	return (ms < HEALTH_MIN_INTERVAL_MS ? HEALTH_MIN_INTERVAL_MS : ms) /
	    1000.0;
}

static double
interval_s(const struct backend *be)
{
	return clamped_s(be->conf.check_interval_ms);
}

static double
timeout_s(const struct backend *be)
{
	return clamped_s(be->conf.check_timeout_ms);
}

/* ------------------------------------------------------------------ */
/* TLS contexts, one per backend with tls checks. */

static SSL_CTX *
tls_ctx(struct backend *be, const char **why)
{
	struct htls	*t;
	const char	*ca = be->conf.check_ca_file;

	for (t = tls_ctxs; t != NULL; t = t->next)
		if (t->be == be)
			break;
	if (t == NULL) {
		if ((t = calloc(1, sizeof(*t))) == NULL) {
			*why = "out of memory";
			return NULL;
		}
		t->be = be;
		t->next = tls_ctxs;
		tls_ctxs = t;
		ERR_clear_error();
		if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
			snprintf(t->err, sizeof(t->err), "cannot make a TLS "
			    "context");
		} else if (ca[0] != '\0') {
			SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
			if (SSL_CTX_load_verify_locations(t->ctx, ca,
			    NULL) != 1) {
				snprintf(t->err, sizeof(t->err),
				    "cannot load check_ca_file %.64s", ca);
				SSL_CTX_free(t->ctx);
				t->ctx = NULL;
			}
		} else
			SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
		if (t->ctx != NULL)
			SSL_CTX_set_session_cache_mode(t->ctx,
			    SSL_SESS_CACHE_OFF);
		else
			log_warnx("backend %s: tls checks: %s", be->name,
			    t->err);
		ERR_clear_error();
	}
	*why = t->err;
	return t->ctx;
}

static void
tls_ctx_free_all(void)
{
	struct htls *t;

	while ((t = tls_ctxs) != NULL) {
		tls_ctxs = t->next;
		SSL_CTX_free(t->ctx);
		free(t);
	}
}

/* ------------------------------------------------------------------ */
/* One check. */

static void
timer_arm(struct hcheck *h, double after)
{
	ev_timer_stop(hloop, &h->timer);
	ev_timer_set(&h->timer, after > 0 ? after : 0, 0.);
	ev_timer_start(hloop, &h->timer);
}

static void
io_want(struct hcheck *h, int events)
{
	if (ev_is_active(&h->io) && (h->io.events & (EV_READ | EV_WRITE)) ==
	    events)
		return;
	ev_io_stop(hloop, &h->io);
	ev_io_set(&h->io, h->fd, events);
	ev_io_start(hloop, &h->io);
}

/* Drop the socket (and TLS state) of the running check, if any. */
static void
check_close(struct hcheck *h)
{
	ev_io_stop(hloop, &h->io);
	if (h->ssl != NULL) {
		SSL_free(h->ssl);
		h->ssl = NULL;
		ERR_clear_error();
	}
	h->tls_done = false;
	if (h->fd != -1) {
		net_close_rst(h->fd);
		h->fd = -1;
	}
}

/* Arm the timer for the next check: `interval` after the last start. */
static void
schedule_next(struct hcheck *h, ev_tstamp now)
{
	double next = interval_s(h->srv->be) - (now - h->t_start);

	h->phase = HP_IDLE;
	timer_arm(h, next);
}

/*
 * The check ended with a verdict: record it, step the machine, report a
 * change, schedule the next one. `code` is "L4OK", "L7STS", ...
 */
__attribute__((format(printf, 4, 5)))
static void
check_done(struct hcheck *h, bool ok, const char *code, const char *fmt, ...)
{
	struct server	*s = h->srv;
	char		 detail[sizeof(s->check_detail)];
	char		 reason[HEALTH_REASON_MAX];
	ev_tstamp	 now;
	double		 ms;
	va_list		 ap;

	check_close(h);
	now = ev_time();
	ms = (now - h->t_start) * 1000.0;
	if (ms < 0)
		ms = 0;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	server_set_check_result(s, code, detail, ms, now);
	snprintf(reason, sizeof(reason), "%s: %s, %.0fms", code, detail, ms);
	log_debug("check %s/%s: %s", s->be->name, s->name, reason);

	/* Someone else (passive, admin) changed the state: follow it. */
	if (h->fsm.state != s->health)
		health_fsm_init(&h->fsm, s->be->conf.rise, s->be->conf.fall,
		    s->health);
	if (health_fsm_step(&h->fsm, ok))
		server_set_health(s, h->fsm.state, reason);
	schedule_next(h, now);
}

/*
 * The check could not run for a reason of ours (no fds, no memory, no
 * ports): it says nothing about the server. Record it, skip the machine.
 */
static void
check_skip(struct hcheck *h, const char *what, int err)
{
	struct server	*s = h->srv;
	char		 detail[sizeof(s->check_detail)];
	ev_tstamp	 now;

	check_close(h);
	now = ev_time();
	snprintf(detail, sizeof(detail), "%s: %s", what, strerror(err));
	server_set_check_result(s, "SOCKERR", detail,
	    (now - h->t_start) * 1000.0, now);
	if (log_ratelimit(&sockerr_rl, 1))
		log_warnx("check %s/%s: %s (not counted; %lu more suppressed)",
		    s->be->name, s->name, detail,
		    log_ratelimit_suppressed(&sockerr_rl));
	schedule_next(h, now);
}

/* The address a check connects to: the server's, or check_port on it. */
static void
check_addr(const struct server *s, struct sockaddr_storage *ss)
{
	int port = s->be->conf.check_port;

	memcpy(ss, &s->addr, sizeof(*ss));
	if (port <= 0)
		return;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static bool
local_errno(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM || err == EADDRNOTAVAIL || err == EAGAIN;
}

/* L4CON / L4TOUT from a connect errno. */
static void
connect_failed(struct hcheck *h, int err)
{
	char e[64];

	if (local_errno(err)) {
		check_skip(h, "connect", err);
		return;
	}
	errstr(e, sizeof(e), err);
	if (err == ETIMEDOUT)
		check_done(h, false, "L4TOUT", "%s", e);
	else
		check_done(h, false, "L4CON", "%s", e);
}

/*
 * check_send_proxy: the PROXY header a check starts with, into buf: a v2
 * LOCAL (or v1 "PROXY UNKNOWN"), the version the server gets for sessions
 * (v2 when it gets none): the check is shoal's own connection, there is no
 * client to name. Its length, 0 without check_send_proxy.
 */
static size_t
check_proxy_header(const struct server *s, uint8_t *buf, size_t len)
{
	int	v = atomic_load(&s->send_proxy), n;

	if (!s->be->conf.check_send_proxy)
		return 0;
	if (v == SEND_PROXY_UNSET)
		v = s->be->conf.send_proxy;
	n = proxyproto_encode(v == SEND_PROXY_V1 ? 1 : 2, NULL, NULL, NULL, 0,
	    buf, len);
	return n > 0 ? (size_t)n : 0;
}

static void
check_begin(struct hcheck *h)
{
	struct server		*s = h->srv;
	struct backend		*be = s->be;
	struct sockaddr_storage	 ss;
	char			 host[NET_ADDRSTRLEN];
	int			 n;

	h->t_start = ev_time();
	h->rlen = 0;
	h->sent = 0;
	h->out = NULL;
	h->outlen = 0;
	check_addr(s, &ss);
	h->pplen = check_proxy_header(s, (uint8_t *)h->req, sizeof(h->req));
	n = 0;
	switch (be->conf.check) {
	case CHECK_HTTP:
		if (be->conf.check_http_host[0] != '\0')
			snprintf(host, sizeof(host), "%.*s",
			    (int)sizeof(host) - 1, be->conf.check_http_host);
		else
			net_addr_str((struct sockaddr *)&ss, host, sizeof(host));
		n = snprintf(h->req + h->pplen, sizeof(h->req) - h->pplen,
		    "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
		    "User-Agent: shoal-check\r\n\r\n",
		    be->conf.check_http_method, be->conf.check_http_path, host);
		if (n < 0 || (size_t)n >= sizeof(h->req) - h->pplen)
			n = (int)(sizeof(h->req) - h->pplen) - 1; /* cannot be */
		break;
	case CHECK_SEND_EXPECT:
		n = (int)be->conf.check_send_len;	/* 256 at most */
		memcpy(h->req + h->pplen, be->conf.check_send, (size_t)n);
		break;
	default:
		break;
	}
	h->out = h->req;
	h->outlen = h->pplen + (size_t)n;

	h->phase = HP_CONNECT;
	timer_arm(h, timeout_s(be));
	h->fd = net_connect((struct sockaddr *)&ss, s->addrlen);
	if (h->fd == -1) {
		connect_failed(h, errno);
		return;
	}
	ev_io_init(&h->io, health_io_cb, h->fd, EV_WRITE);
	h->io.data = h;
	/*
	 * When the loop was busy, the answer and the timeout can become due
	 * in the same iteration: the answer goes first (libev runs higher
	 * priorities first), so a slow loop does not fail healthy servers.
	 */
	ev_set_priority(&h->io, EV_MAXPRI);
	ev_io_start(hloop, &h->io);
}

static void	send_step(struct hcheck *);
static void	sent_all(struct hcheck *);

static void
tls_step(struct hcheck *h)
{
	const char	*why;
	SSL_CTX		*ctx;
	struct tls_be	*bt;
	long		 vr;
	unsigned long	 e;
	int		 r, err;

	if (h->ssl == NULL && (bt = atomic_load(&h->srv->be->tls)) != NULL) {
		/* tls = yes backend: the sessions' own context and name. */
		ERR_clear_error();
		if ((h->ssl = tlsctx_client_ssl(bt->ctx, bt->sni)) == NULL ||
		    SSL_set_fd(h->ssl, h->fd) != 1) {
			check_skip(h, "SSL_new", ENOMEM);
			return;
		}
		SSL_set_connect_state(h->ssl);
		h->phase = HP_HANDSHAKE;
	} else if (h->ssl == NULL) {
		if ((ctx = tls_ctx(h->srv->be, &why)) == NULL) {
			check_done(h, false, "L6RSP", "%s", why);
			return;
		}
		ERR_clear_error();
		if ((h->ssl = SSL_new(ctx)) == NULL ||
		    SSL_set_fd(h->ssl, h->fd) != 1) {
			check_skip(h, "SSL_new", ENOMEM);
			return;
		}
		if (h->srv->be->conf.check_sni[0] != '\0') {
			const char *sni = h->srv->be->conf.check_sni;

			SSL_set_tlsext_host_name(h->ssl, sni);
			/* With a CA, the certificate must also name it. */
			if (h->srv->be->conf.check_ca_file[0] != '\0')
				SSL_set1_host(h->ssl, sni);
		}
		SSL_set_connect_state(h->ssl);
		h->phase = HP_HANDSHAKE;
	}
	ERR_clear_error();
	errno = 0;
	if ((r = SSL_do_handshake(h->ssl)) == 1) {
		h->tls_done = true;
		if (h->sent < h->outlen) {	/* a request, through TLS */
			h->phase = HP_SEND;
			send_step(h);
		} else
			sent_all(h);
		return;
	}
	switch ((err = SSL_get_error(h->ssl, r))) {
	case SSL_ERROR_WANT_READ:
		io_want(h, EV_READ);
		return;
	case SSL_ERROR_WANT_WRITE:
		io_want(h, EV_WRITE);
		return;
	case SSL_ERROR_SSL:
		if ((vr = SSL_get_verify_result(h->ssl)) != X509_V_OK) {
			check_done(h, false, "L6RSP", "verify: %s",
			    X509_verify_cert_error_string(vr));
			return;
		}
		e = ERR_peek_last_error();
		why = ERR_reason_error_string(e);
		check_done(h, false, "L6RSP", "handshake: %s",
		    why != NULL ? why : "failed");
		return;
	case SSL_ERROR_SYSCALL:
		if (errno != 0) {
			char es[64];

			errstr(es, sizeof(es), errno);
			check_done(h, false, "L6RSP", "handshake: %s", es);
		} else
			check_done(h, false, "L6RSP", "handshake: connection "
			    "closed");
		return;
	case SSL_ERROR_ZERO_RETURN:
		check_done(h, false, "L6RSP", "handshake: connection closed");
		return;
	default:
		check_done(h, false, "L6RSP", "handshake: error %d", err);
		return;
	}
}

/* http: decide on the status line once it is complete (or cannot be). */
static void
http_judge(struct hcheck *h, bool eof)
{
	char	*nl = memchr(h->rbuf, '\n', h->rlen);
	size_t	 len = nl != NULL ? (size_t)(nl - h->rbuf) : h->rlen;
	char	 shown[48];
	int	 code;

	if (nl == NULL && !eof && h->rlen < sizeof(h->rbuf)) {
		/* "HTTP/1.1 200 " says it all: no need to wait for the LF. */
		if (h->rlen < 13)
			return;
		len = 13;
	}
	if (h->rlen == 0) {
		check_done(h, false, "L7RSP", "connection closed without "
		    "a reply");
		return;
	}
	if ((code = health_http_status(h->rbuf, len)) == -1) {
		escape_bytes(shown, sizeof(shown), h->rbuf, len < 32 ? len : 32);
		check_done(h, false, "L7RSP", "malformed status line \"%s\"",
		    shown);
		return;
	}
	if (code >= 200 && code < 400)
		check_done(h, true, "L7OK", "HTTP %d", code);
	else
		check_done(h, false, "L7STS", "HTTP %d", code);
}

/* send-expect: the reply must start with check_expect. */
static void
expect_judge(struct hcheck *h, bool eof)
{
	const struct conf_backend	*c = &h->srv->be->conf;
	size_t				 n = h->rlen < c->check_expect_len ?
					    h->rlen : c->check_expect_len;
	char				 shown[48];

	if (memcmp(h->rbuf, c->check_expect, n) != 0) {
		escape_bytes(shown, sizeof(shown), h->rbuf, n < 24 ? n : 24);
		check_done(h, false, "L7RSP", "unexpected reply \"%s\"", shown);
		return;
	}
	if (n == c->check_expect_len) {
		check_done(h, true, "L7OK", "expected reply");
		return;
	}
	if (eof)
		check_done(h, false, "L7RSP", h->rlen == 0 ?
		    "connection closed without a reply" :
		    "connection closed after %zu bytes", h->rlen);
}

/* Read (or write) through the check's TLS: bytes, 0 at the end, -1 with
 * errno, or -2 when it waits (io_want() done). */
static ssize_t
tls_io(struct hcheck *h, char *p, size_t len, bool wr)
{
	size_t	 n;
	int	 e, r;

	ERR_clear_error();
	errno = 0;
	r = wr ? SSL_write_ex(h->ssl, p, len, &n) :
	    SSL_read_ex(h->ssl, p, len, &n);
	if (r == 1)
		return (ssize_t)n;
	switch ((e = SSL_get_error(h->ssl, 0))) {
	case SSL_ERROR_WANT_READ:
		io_want(h, EV_READ);
		return -2;
	case SSL_ERROR_WANT_WRITE:
		io_want(h, EV_WRITE);
		return -2;
	case SSL_ERROR_ZERO_RETURN:
		if (!wr)
			return 0;
		errno = EPIPE;
		return -1;
	default:
		if (errno == 0)
			errno = e == SSL_ERROR_SYSCALL ? ECONNRESET : EPROTO;
		return -1;
	}
}

static void
recv_step(struct hcheck *h)
{
	enum conf_check	 kind = h->srv->be->conf.check;
	ssize_t		 n;
	char		 e[64];

	for (;;) {
		if (h->rlen == sizeof(h->rbuf)) {
			if (kind == CHECK_HTTP)
				http_judge(h, true);
			else
				expect_judge(h, true);
			return;
		}
		n = h->tls_done ? tls_io(h, h->rbuf + h->rlen,
		    sizeof(h->rbuf) - h->rlen, false) : recv(h->fd,
		    h->rbuf + h->rlen, sizeof(h->rbuf) - h->rlen, 0);
		if (n == -2)
			return;			/* io_want() done */
		if (n > 0) {
			h->rlen += (size_t)n;
			if (kind == CHECK_HTTP)
				http_judge(h, false);
			else
				expect_judge(h, false);
			if (h->phase != HP_RECV)
				return;		/* decided */
			continue;
		}
		if (n == 0) {
			if (kind == CHECK_HTTP)
				http_judge(h, true);
			else
				expect_judge(h, true);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			io_want(h, EV_READ);
			return;
		}
		errstr(e, sizeof(e), errno);
		check_done(h, false, "L7RSP", "%s", e);
		return;
	}
}

/* Whether the check speaks TLS: check = tls, or a tls = yes backend. */
static bool
check_tls(const struct hcheck *h)
{
	return h->srv->be->conf.check == CHECK_TLS ||
	    atomic_load(&h->srv->be->tls) != NULL;
}

/* Everything the check writes first is written (before a handshake: the
 * PROXY header only): on to its next step. */
static void
sent_all(struct hcheck *h)
{
	if (check_tls(h) && !h->tls_done) {
		tls_step(h);
		return;
	}
	switch (h->srv->be->conf.check) {
	case CHECK_HTTP:
	case CHECK_SEND_EXPECT:
		h->phase = HP_RECV;
		recv_step(h);
		break;
	default:
		if (h->tls_done)
			check_done(h, true, "L6OK", "%s",
			    SSL_get_version(h->ssl));
		else
			check_done(h, true, "L4OK", h->pplen > 0 ? "connected, "
			    "PROXY header sent" : "connected");
		break;
	}
}

static void
send_step(struct hcheck *h)
{
	/* Before a TLS handshake only the PROXY header goes, in clear. */
	size_t	lim = check_tls(h) && !h->tls_done ? h->pplen : h->outlen;
	ssize_t	n;
	char	e[64];

	while (h->sent < lim) {
		n = h->tls_done ? tls_io(h, (char *)(uintptr_t)(h->out +
		    h->sent), h->outlen - h->sent, true) : send(h->fd,
		    h->out + h->sent, lim - h->sent, MSG_NOSIGNAL);
		if (n == -2)
			return;			/* io_want() done */
		if (n > 0) {
			h->sent += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			io_want(h, EV_WRITE);
			return;
		}
		errstr(e, sizeof(e), errno);
		check_done(h, false, h->sent < h->pplen ? "L4CON" : "L7RSP",
		    "send: %s", e);
		return;
	}
	sent_all(h);
}

/* Connected: write what goes first (a PROXY header, a request), if any. */
static void
connected(struct hcheck *h)
{
	if (h->outlen > h->sent) {
		h->phase = HP_SEND;
		send_step(h);
		return;
	}
	sent_all(h);
}

static void
health_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hcheck *h = w->data;

	(void)loop;
	(void)revents;
	switch (h->phase) {
	case HP_CONNECT:
		if (net_connect_result(h->fd) == -1) {
			connect_failed(h, errno);
			return;
		}
		connected(h);
		break;
	case HP_HANDSHAKE:
		tls_step(h);
		break;
	case HP_SEND:
		send_step(h);
		break;
	case HP_RECV:
		recv_step(h);
		break;
	default:
		ev_io_stop(hloop, w);
		break;
	}
}

static void
health_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct hcheck	*h = t->data;
	struct server	*s = h->srv;
	char		 reason[64];

	(void)loop;
	(void)revents;
	switch (h->phase) {
	case HP_IDLE:
		if (!s->in_table || s->admin == ADM_MAINT) {
			h->phase = HP_STOPPED;
			return;
		}
		check_begin(h);
		break;
	case HP_CONNECT:
		check_done(h, false, "L4TOUT", "connect timeout");
		break;
	case HP_HANDSHAKE:
		check_done(h, false, "L6TOUT", "handshake timeout");
		break;
	case HP_SEND:
	case HP_RECV:
		check_done(h, false, "L7TOUT", h->rlen == 0 ? "no reply" :
		    "incomplete reply");
		break;
	case HP_RETRY:
		h->phase = HP_STOPPED;
		snprintf(reason, sizeof(reason), "passive: retry after %ums",
		    s->be->conf.check_interval_ms);
		server_set_health(s, HEALTH_UP, reason);
		break;
	case HP_STOPPED:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Per-server state. */

static struct hcheck *
hcheck_new(struct server *s)
{
	struct hcheck *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	server_ref(s);
	h->srv = s;
	h->fd = -1;
	h->phase = HP_STOPPED;
	health_fsm_init(&h->fsm, s->be->conf.rise, s->be->conf.fall,
	    s->health);
	ev_timer_init(&h->timer, health_timer_cb, 0., 0.);
	h->timer.data = h;
	ev_init(&h->io, health_io_cb);
	h->io.data = h;
	TAILQ_INSERT_TAIL(&all_checks, h, entry);
	s->check = h;
	return h;
}

static void
hcheck_free(struct hcheck *h)
{
	check_close(h);
	ev_timer_stop(hloop, &h->timer);
	TAILQ_REMOVE(&all_checks, h, entry);
	if (h->srv->check == h)
		h->srv->check = NULL;
	server_unref(h->srv);
	free(h);
}

/* Abort a running check without a verdict; stop the timer. */
static void
hcheck_halt(struct hcheck *h)
{
	check_close(h);
	ev_timer_stop(hloop, &h->timer);
	h->phase = HP_STOPPED;
}

/* Start checking from `checking`, the first check within `spread` s. */
static void
hcheck_schedule_first(struct hcheck *h, double spread)
{
	double at = 0;

	if (spread > 0)
		at = (double)(rng_next() >> 11) / 9007199254740992.0 * spread;
	health_fsm_init(&h->fsm, h->srv->be->conf.rise, h->srv->be->conf.fall,
	    h->srv->health);
	h->t_start = ev_time();
	h->phase = HP_IDLE;
	timer_arm(h, at);
}

void
health_add(struct server *s)
{
	struct hcheck *h;

	if (!running || s->be->conf.check == CHECK_NONE || s->check != NULL)
		return;
	if ((h = hcheck_new(s)) == NULL) {
		log_warn("server %s/%s: cannot start health checks",
		    s->be->name, s->name);
		return;
	}
	/* Make the TLS context now, not in the middle of other checks:
	 * loading providers and a CA file takes a while. */
	if (s->be->conf.check == CHECK_TLS) {
		const char *why;

		(void)tls_ctx(s->be, &why);
	}
	/* A server that starts up or down (init_state) is checked at once:
	 * its state is a guess until then. One that is `checking`, or that
	 * was checked before (new check settings), within one interval. */
	if (s->admin != ADM_MAINT)
		hcheck_schedule_first(h, s->health != HEALTH_CHECKING &&
		    s->last_check == 0 ? 0 : interval_s(s->be));
}

void
health_remove(struct server *s)
{
	if (s->check != NULL)
		hcheck_free(s->check);
}

void
health_admin_changed(struct server *s)
{
	struct hcheck *h = s->check;

	if (!running || s->be->conf.check == CHECK_NONE)
		return;
	if (s->admin == ADM_MAINT) {
		if (h != NULL)
			hcheck_halt(h);
		return;
	}
	if (h == NULL) {
		health_add(s);
		return;
	}
	if (h->phase != HP_STOPPED)
		return;		/* drain <-> ready: checks go on */
	server_set_health(s, HEALTH_CHECKING, "leaving maintenance");
	hcheck_schedule_first(h, 0);
}

/* ------------------------------------------------------------------ */
/* Table events. */

/* Whether a backend's new settings change how its servers are checked. */
bool
health_settings_changed(const struct conf_backend *a,
    const struct conf_backend *b)
{
	return a->check != b->check ||
	    strcmp(a->check_http_method, b->check_http_method) != 0 ||
	    strcmp(a->check_http_path, b->check_http_path) != 0 ||
	    strcmp(a->check_http_host, b->check_http_host) != 0 ||
	    a->check_send_len != b->check_send_len ||
	    memcmp(a->check_send, b->check_send, a->check_send_len) != 0 ||
	    a->check_expect_len != b->check_expect_len ||
	    memcmp(a->check_expect, b->check_expect, a->check_expect_len) != 0 ||
	    strcmp(a->check_sni, b->check_sni) != 0 ||
	    strcmp(a->check_ca_file, b->check_ca_file) != 0 ||
	    a->check_port != b->check_port ||
	    a->check_interval_ms != b->check_interval_ms ||
	    a->check_timeout_ms != b->check_timeout_ms ||
	    a->rise != b->rise || a->fall != b->fall;
}

/* New check settings: every server starts over under them. */
static void
backend_changed(struct backend *be, const struct conf_backend *was)
{
	struct server *s;

	if (!health_settings_changed(was, &be->conf))
		return;
	TAILQ_FOREACH(s, &be->servers, entry) {
		health_remove(s);
		if (be->conf.check == CHECK_NONE)
			server_set_health(s, HEALTH_UP, "check = none");
		else
			health_add(s);
	}
}

const struct table_observer health_observer = {
	.joined = health_add,
	.leaving = health_remove,
	.admin_changed = health_admin_changed,
	.backend_changed = backend_changed,
};

/* ------------------------------------------------------------------ */
/* Passive health. */

/* Called by workers: only wake the control loop. */
static void
passive_hook(void)
{
	struct ev_loop *loop = atomic_load(&async_loop);

	if (loop != NULL)
		ev_async_send(loop, &passive_async);
}

static void
passive_down(struct server *s, uint32_t streak)
{
	struct backend	*be = s->be;
	struct hcheck	*h = s->check;
	char		 reason[96];

	snprintf(reason, sizeof(reason), "passive: %u consecutive failures "
	    "from traffic", streak);
	server_set_health(s, HEALTH_DOWN, reason);
	if (be->conf.check != CHECK_NONE) {
		/* Only checks bring it back: rise successes from now. */
		if (h != NULL)
			health_fsm_init(&h->fsm, be->conf.rise, be->conf.fall,
			    HEALTH_DOWN);
		return;
	}
	/* No checks: try again after one interval (nginx fail_timeout). */
	if (h == NULL && (h = hcheck_new(s)) == NULL) {
		log_warn("server %s/%s: cannot arm the retry timer",
		    be->name, s->name);
		server_set_health(s, HEALTH_UP, "passive: cannot arm the "
		    "retry timer");
		return;
	}
	h->phase = HP_RETRY;
	timer_arm(h, interval_s(be));
}

static void
passive_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct backend	*be;
	struct server	*s, *next;
	uint32_t	 streak;
	int		 fall;

	(void)loop;
	(void)w;
	(void)revents;
	if (hbackends == NULL)
		return;
	TAILQ_FOREACH(be, hbackends, entry) {
		fall = atomic_load_explicit(&be->fall, memory_order_relaxed);
		if (fall < 1)
			fall = 1;
		for (s = TAILQ_FIRST(&be->servers); s != NULL; s = next) {
			next = TAILQ_NEXT(s, entry);
			if (s->health != HEALTH_UP)
				continue;
			streak = atomic_load_explicit(&s->fail_streak,
			    memory_order_relaxed);
			if (streak >= (uint32_t)fall)
				passive_down(s, streak);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Start and stop. */

int
health_start(struct ev_loop *loop, struct backend_list *backends)
{
	struct backend	*be;
	struct server	*s;

	if (running) {
		errno = EALREADY;
		return -1;
	}
	hloop = loop;
	hbackends = backends;
	rng_state ^= (uint64_t)(ev_time() * 1e6) ^ ((uint64_t)getpid() << 32);
	running = true;
	ev_async_init(&passive_async, passive_cb);
	ev_async_start(loop, &passive_async);
	atomic_store(&async_loop, loop);
	TAILQ_FOREACH(be, backends, entry)
		TAILQ_FOREACH(s, &be->servers, entry)
			health_add(s);
	server_set_passive_hook(passive_hook);
	return 0;
}

void
health_stop(void)
{
	struct hcheck *h;

	if (!running)
		return;
	/* A worker may still be inside the hook: the loop outlives it, and a
	 * send to a stopped watcher is harmless. */
	server_set_passive_hook(NULL);
	atomic_store(&async_loop, NULL);
	ev_async_stop(hloop, &passive_async);
	while ((h = TAILQ_FIRST(&all_checks)) != NULL)
		hcheck_free(h);
	tls_ctx_free_all();
	running = false;
	hbackends = NULL;
	hloop = NULL;
}
