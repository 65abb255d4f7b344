/*
 * session.c - a session's life: pick a server, connect (with retries on
 * other servers), hand over to the relay, time out, close once.
 *
 *     client            session (one worker)           server
 *    +------+  r.cli  +---------------------+  r.srv  +------+
 *    |      | <-----> | pick -> connect ->  | <-----> |      |
 *    |      |         | relay -> close once |         |      |
 *    +------+         +---------------------+         +------+
 *   client_role:            timer: queue,       server_role: first byte
 *   nothing to report       connect, idle       = passive success; reset
 *                                               before it = failure
 *
 * The two sides are symmetric halves of a struct relay (relay.h), each with
 * its peer, its own byte counters and its role: what the session is told
 * about that side. No code here or in relay.c asks "which side is this".
 */
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "loadweight.h"
#include "log.h"
#include "net.h"
#include "session.h"
#include "tls.h"
#include "tlsctx.h"

#define QUEUE_POLL	0.010	/* seconds between picks while queued */

static void	session_connect(struct session *);
static void	session_timer_cb(struct ev_loop *, ev_timer *, int);
static void	connect_io_cb(struct ev_loop *, ev_io *, int);
static void	connect_started(struct session *);
static void	header_start(struct session *, struct client_policy *);
static bool	session_admit(struct session *, struct client_policy *);
static void	timer_arm(struct session *, double);
static void	session_go(struct session *);
static void	client_watch_reset(struct session *);

static double
ms(uint32_t v)
{
	return v / 1000.0;
}

static struct session *
session_of(struct relay *r)
{
	return (struct session *)(void *)((char *)r -
	    offsetof(struct session, r));
}

/* The relay's exit is the session's. */
static void
relay_close_cb(struct relay *r, const char *term, bool rst)
{
	session_close(session_of(r), term, rst);
}

/* Microseconds from a to b (libev times), 0 if b is earlier. */
static uint64_t
us_between(ev_tstamp a, ev_tstamp b)
{
	return b > a ? (uint64_t)((b - a) * 1e6 + 0.5) : 0;
}

/* The server spoke: passive health counts it as working; its time to
 * the first byte is a signal. */
static void
server_first_read(struct relay_side *sd)
{
	struct session *s = session_of(sd->r);

	server_note_success(s->server);
	hist_add(&s->server->lat[LAT_TTFB], us_between(s->t_connected,
	    ev_now(s->home->loop)));
}

/* A server that resets before saying anything counts as failing. */
static void
server_failed(struct relay_side *sd)
{
	if (!sd->spoke)
		server_note_failure(session_of(sd->r)->server);
}

/* A clean end counts as a success even for a silent server. */
static void
server_ended(struct relay_side *sd)
{
	if (!sd->spoke)
		server_note_success(session_of(sd->r)->server);
}

static const struct relay_role client_role = {
	.name = "client",
	.term_fail = "CD",
};

static const struct relay_role server_role = {
	.name = "server",
	.term_fail = "SD",
	.first_read = server_first_read,
	.failed = server_failed,
	.ended = server_ended,
};

/* s now uses srv: bytes relayed either way count on it. */
static void
session_use(struct session *s, struct server *srv)
{
	s->server = srv;
	s->r.srv.sent_total = srv ? &srv->bytes_in : NULL;
	s->r.cli.sent_total = srv ? &srv->bytes_out : NULL;
}

void
session_start(struct session_home *h, struct frontend *fe, int fd,
    const struct sockaddr *sa, socklen_t salen)
{
	struct session		*s;
	struct client_policy	*p;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		static struct ratelimit rl;

		if (log_ratelimit(&rl, 1))
			log_warnx("frontend %s: out of memory, closing client",
			    fe->name);
		net_close(fd);
		h->slot_freed(h, fe);
		return;
	}
	s->home = h;
	s->fe = fe;
	s->be = atomic_load_explicit(&fe->backend, memory_order_acquire);
	relay_init(&s->r, &client_role, &server_role);
	s->r.loop = h->loop;
	s->r.bufs = h->bufs;
	s->r.close = relay_close_cb;
	s->r.cli.fd = fd;
	memcpy(&s->client, sa, salen);
	s->clientlen = salen;
	s->pk.client = (const struct sockaddr *)&s->client;
	s->pk.rng = h->rng;
	s->t_accept = ev_now(h->loop);
	s->r.cli.active = s->r.srv.active = s->t_accept;
	s->timeout_client_ms = atomic_load_explicit(&fe->timeout_client_ms,
	    memory_order_relaxed);
	ev_init(&s->timer, session_timer_cb);
	s->timer.data = s;
	TAILQ_INSERT_TAIL(&h->sessions, s, entry);
	h->nsessions++;
	/* TCP_NODELAY comes from the listener (net_listen). */
	s->state = SS_QUEUED;
	p = atomic_load_explicit(&fe->policy, memory_order_acquire);
	if (p != NULL && p->proxy_from != NULL)
		header_start(s, p);
	else if (p == NULL || session_admit(s, p))
		session_go(s);
}

/* ------------------------------------------------------------------ */
/* Who the client is, and whether it may come in (clientid.h). */

/* A monotonic clock in microseconds, for the per-source rates. */
static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Refuse the client before any server was touched: count it on its
 * frontend, say it (at most once a second) and close. A plain close (FIN,
 * or an RST from the kernel if the client's bytes are unread): clients
 * and benchmarks see an empty answer, not a connect error. */
static void
refuse(struct session *s, const char *term, _Atomic uint64_t *counter,
    const char *why)
{
	static struct ratelimit	rl;
	char			cbuf[NET_ADDRSTRLEN];

	atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
	if (log_ratelimit(&rl, 1))
		log_warnx("frontend %s: client %s refused (%s): %s (%lu more "
		    "suppressed)", s->fe->name, net_addr_str((struct sockaddr *)
		    &s->client, cbuf, sizeof(cbuf)), term, why,
		    log_ratelimit_suppressed(&rl));
	session_close(s, term, false);
}

/* Access lists and per-source limits: true if the client may go on. */
static bool
session_admit(struct session *s, struct client_policy *p)
{
	struct frontend	*fe = s->fe;
	bool		 held;

	switch (client_admit(p, (struct sockaddr *)&s->client, now_us(),
	    &held)) {
	case CLIENT_OK:
		if (held)
			s->held = p;
		return true;
	case CLIENT_DENIED:
		refuse(s, "PA", &fe->refused_acl, "denied by allow/deny");
		break;
	case CLIENT_OVER_CONN:
		refuse(s, "PL", &fe->refused_conn_source,
		    "over maxconn_per_source");
		break;
	case CLIENT_OVER_RATE:
		refuse(s, "PR", &fe->refused_rate_source,
		    "over rate_per_source");
		break;
	}
	return false;
}

/* The header is in: its source is the client from now on (LOCAL and
 * UNKNOWN keep the peer's); then the access lists and limits apply to it,
 * from the policy current now. */
static void
header_done(struct session *s, const struct proxyproto_hdr *h)
{
	struct client_policy *p;

	free(s->pr);
	s->pr = NULL;
	ev_io_stop(s->home->loop, &s->r.cli.io);
	ev_set_cb(&s->r.cli.io, relay_io_cb);
	s->r.cli.events = 0;
	ev_timer_stop(s->home->loop, &s->timer);
	if (h->has_addr && !h->local) {
		s->clientlen = h->src.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		memcpy(&s->client, &h->src, s->clientlen);
		memcpy(&s->dst, &h->dst, h->dst.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	}
	s->state = SS_QUEUED;
	p = atomic_load_explicit(&s->fe->policy, memory_order_acquire);
	if (p == NULL || session_admit(s, p))
		session_go(s);
}

/* Read towards the header; true if the session moved on. */
static bool
header_step(struct session *s)
{
	struct proxyproto_hdr	 h;
	const char		*why = "connection closed before the header";

	switch (client_proxy_read(s->r.cli.fd, s->pr, &h, &why)) {
	case PROXY_READ_AGAIN:
		return false;
	case PROXY_READ_DONE:
		header_done(s, &h);
		return true;
	default:	/* PROXY_READ_BAD, PROXY_READ_CLOSED */
		refuse(s, "CP", &s->fe->refused_proxy_bad, why);
		return true;
	}
}

static void
header_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct relay_side *sd = io->data;

	(void)loop;
	(void)revents;
	(void)header_step(session_of(sd->r));
}

/* accept_proxy: only a trusted peer may speak first, with a header,
 * within timeout_proxy. */
static void
header_start(struct session *s, struct client_policy *p)
{
	if (!client_proxy_trusted(p, (struct sockaddr *)&s->client)) {
		refuse(s, "PF", &s->fe->refused_proxy_from,
		    "not in accept_proxy_from");
		return;
	}
	if ((s->pr = malloc(sizeof(*s->pr))) == NULL) {
		session_close(s, "RC", false);
		return;
	}
	s->pr->have = 0;
	s->state = SS_HEADER;
	/* Often the header came with the connection. */
	if (header_step(s))
		return;
	ev_io_set(&s->r.cli.io, s->r.cli.fd, EV_READ);
	ev_set_cb(&s->r.cli.io, header_io_cb);
	ev_io_start(s->home->loop, &s->r.cli.io);
	s->r.cli.events = EV_READ;
	timer_arm(s, ms(p->timeout_proxy_ms));
}

/* ------------------------------------------------------------------ */
/* Routing by SNI: read the ClientHello, keep its bytes for the server. */

/* The client's watcher back to the relay's, idle. */
static void
client_watch_reset(struct session *s)
{
	ev_io_stop(s->home->loop, &s->r.cli.io);
	ev_set_cb(&s->r.cli.io, relay_io_cb);
	s->r.cli.events = 0;
}

/* A server name for the log: as sent, anything odd as '?'. NULL when out
 * of memory. */
static char *
log_name(const char *p, size_t n)
{
	char	*d;

	if ((d = strndup(p, n)) != NULL)
		for (char *q = d; *q != '\0'; q++)
			if (!isalnum((unsigned char)*q) && *q != '.' &&
			    *q != '-' && *q != '_')
				*q = '?';
	return d;
}

/* Where a server name (NULL: none was sent) sends the session: the first
 * route it matches, else the frontend's backend. Counted. */
static void
route_pick(struct session *s, const struct sni_routes *rt, const char *name,
    size_t len)
{
	struct frontend	*fe = s->fe;
	_Atomic uint64_t *why = &fe->sni_missing;
	int		 i = -1;

	if (name != NULL) {
		i = clienthello_route_match(rt->pat, rt->n, name, len);
		why = i >= 0 ? &fe->sni_routed : &fe->sni_unmatched;
	}
	atomic_fetch_add_explicit(why, 1, memory_order_relaxed);
	s->be = i >= 0 && rt->be[i] != NULL ? rt->be[i] :
	    atomic_load_explicit(&fe->backend, memory_order_acquire);
	s->routed = true;
}

/* Where the ClientHello (or its absence: v) sends the session; on. */
static void
preread_done(struct session *s, const struct sni_routes *rt, int v,
    const struct clienthello *ch)
{
	struct frontend	*fe = s->fe;

	client_watch_reset(s);
	ev_timer_stop(s->home->loop, &s->timer);
	if (v == CLIENTHELLO_OK && ch->has_sni) {
		s->sni = log_name(ch->sni, ch->sni_len);
		route_pick(s, rt, ch->sni, ch->sni_len);
	} else if (v == CLIENTHELLO_OK)
		route_pick(s, rt, NULL, 0);
	else {
		atomic_fetch_add_explicit(v == CLIENTHELLO_NEED_MORE ?
		    &fe->preread_timeout : &fe->preread_not_tls, 1,
		    memory_order_relaxed);	/* NEED_MORE: or closed */
		s->be = atomic_load_explicit(&fe->backend,
		    memory_order_acquire);
		s->routed = true;
	}
	s->state = SS_QUEUED;
	session_connect(s);
}

/* Read what the client sent so far; true if the session moved on. */
static bool
preread_step(struct session *s, const struct sni_routes *rt)
{
	struct relay_side	*c = &s->r.cli;
	struct clienthello	 ch;
	const char		*why;
	struct buf		*b;
	ssize_t			 n;
	int			 v;

	if (c->buf == NULL && (c->buf = buf_get(s->home->bufs)) == NULL) {
		session_close(s, "RD", true);
		return true;
	}
	b = c->buf;
	do
		n = b->len < b->cap ? recv(c->fd, b->data + b->len,
		    b->cap - b->len, 0) : 0;
	while (n == -1 && errno == EINTR);
	if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
		session_close(s, "CD", true);
		return true;
	}
	if (n > 0) {
		b->len += (uint32_t)n;
		c->spoke = true;
		c->active = ev_now(s->home->loop);
	} else if (n == 0 && b->len < b->cap)
		c->rd_eof = true;
	v = clienthello_parse((const uint8_t *)b->data + b->off,
	    b->len - b->off, &ch, &why);
	if (v == CLIENTHELLO_NEED_MORE && !c->rd_eof && b->len < b->cap)
		return false;
	if (v == CLIENTHELLO_NEED_MORE && b->len == b->cap)
		v = CLIENTHELLO_MALFORMED;	/* longer than a buffer */
	if (b->len == b->off && c->rd_eof) {	/* closed, nothing sent */
		session_close(s, "CD", false);
		return true;
	}
	preread_done(s, rt, v, &ch);
	return true;
}

static void
preread_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct relay_side	*sd = io->data;
	struct session		*s = session_of(sd->r);
	struct sni_routes	*rt;

	(void)loop;
	(void)revents;
	if ((rt = atomic_load_explicit(&s->fe->routes,
	    memory_order_acquire)) == NULL) {
		client_watch_reset(s);		/* a reload took them away */
		s->state = SS_QUEUED;
		session_connect(s);
		return;
	}
	(void)preread_step(s, rt);
}

/* ------------------------------------------------------------------ */
/* TLS termination: the client's handshake comes before anything else. */

/* Watch side sd for ev with cb, in a phase before the relay. */
static void
side_watch(struct session *s, struct relay_side *sd, int ev,
    void (*cb)(struct ev_loop *, ev_io *, int))
{
	ev_io_stop(s->home->loop, &sd->io);
	ev_io_set(&sd->io, sd->fd, ev);
	ev_set_cb(&sd->io, cb);
	ev_io_start(s->home->loop, &sd->io);
	sd->events = ev;
}

/* A handshake failed (why): count it on c, say it (at most once a second:
 * what OpenSSL said, or why the certificate did not verify). */
static void
handshake_failed(struct session *s, struct tls_counters *c, SSL *ssl,
    enum tls_fail why, const char *who)
{
	static struct ratelimit	 rl;
	char			 cbuf[NET_ADDRSTRLEN];
	const char		*detail = NULL;
	unsigned long		 e;
	long			 vr;

	atomic_fetch_add_explicit(&c->fail[why], 1, memory_order_relaxed);
	if (!log_ratelimit(&rl, 1))
		return;
	if (why == TLS_FAIL_VERIFY &&
	    (vr = SSL_get_verify_result(ssl)) != X509_V_OK)
		detail = X509_verify_cert_error_string(vr);
	else if ((e = ERR_peek_last_error()) != 0)
		detail = ERR_reason_error_string(e);
	log_warnx("frontend %s: client %s: %s TLS handshake failed: %s%s%s "
	    "(%lu more suppressed)", s->fe->name, net_addr_str((struct
	    sockaddr *)&s->client, cbuf, sizeof(cbuf)), who,
	    tls_fail_name(why), detail != NULL ? ": " : "",
	    detail != NULL ? detail : "", log_ratelimit_suppressed(&rl));
}

static void	handshake_io_cb(struct ev_loop *, ev_io *, int);

/* The client's handshake is over: note what it chose, go on. */
static void
handshake_done(struct session *s)
{
	SSL			*ssl = s->r.cli.ssl;
	const unsigned char	*a;
	unsigned int		 alen;
	const char		*name;

	client_watch_reset(s);
	ev_timer_stop(s->home->loop, &s->timer);
	tls_count_ok(&s->fe->tls_stats, ssl);
	s->tls = true;
	s->tls_ver = tls_version_name(ssl);
	if ((name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) !=
	    NULL)
		s->sni = log_name(name, strlen(name));
	SSL_get0_alpn_selected(ssl, &a, &alen);
	for (unsigned int i = 0; i < alen && i + 1 < sizeof(s->alpn); i++)
		s->alpn[i] = isgraph(a[i]) ? (char)a[i] : '?';
	s->state = SS_QUEUED;
	session_go(s);
}

/* Drive the client's handshake; true if the session moved on. */
static bool
handshake_step(struct session *s)
{
	struct relay_side	*c = &s->r.cli;
	int			 r, e;

	ERR_clear_error();
	errno = 0;
	if ((r = SSL_do_handshake(c->ssl)) == 1) {
		handshake_done(s);
		return true;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		side_watch(s, c, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE,
		    handshake_io_cb);
		return false;
	}
	handshake_failed(s, &s->fe->tls_stats, c->ssl, tls_fail_reason(c->ssl,
	    e, errno), "client");
	session_close(s, "CH", false);
	return true;
}

static void
handshake_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct relay_side *sd = io->data;

	(void)loop;
	(void)revents;
	(void)handshake_step(session_of(sd->r));
}

/* tls = yes: an SSL for the client on the frontend's context as it is
 * now (a reload does not change it for this session), and its handshake
 * within timeout_handshake. */
static void
handshake_start(struct session *s, const struct tls_fe *t)
{
	SSL	*ssl;

	ERR_clear_error();
	if ((ssl = tlsctx_server_ssl(t->srv)) == NULL ||
	    SSL_set_fd(ssl, s->r.cli.fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		session_close(s, "RC", false);
		return;
	}
	SSL_set_accept_state(ssl);
	s->r.cli.ssl = ssl;
	s->state = SS_HANDSHAKE;
	if (handshake_step(s))
		return;
	timer_arm(s, ms(t->timeout_handshake_ms));
}

/* Admitted: TLS handshake if the frontend terminates; route by SNI if it
 * says so (the name from the handshake, or read from the ClientHello);
 * then connect. */
static void
session_go(struct session *s)
{
	struct tls_fe		*t = atomic_load_explicit(&s->fe->tls,
				    memory_order_acquire);
	struct sni_routes	*rt;
	const char		*name;

	if (t != NULL && !s->tls) {
		handshake_start(s, t);
		return;
	}
	rt = atomic_load_explicit(&s->fe->routes, memory_order_acquire);
	if (rt == NULL) {
		session_connect(s);
		return;
	}
	if (s->tls) {
		name = SSL_get_servername(s->r.cli.ssl,
		    TLSEXT_NAMETYPE_host_name);
		route_pick(s, rt, name, name != NULL ? strlen(name) : 0);
		session_connect(s);
		return;
	}
	s->preread = true;
	s->state = SS_PREREAD;
	if (preread_step(s, rt))
		return;
	ev_io_set(&s->r.cli.io, s->r.cli.fd, EV_READ);
	ev_set_cb(&s->r.cli.io, preread_io_cb);
	ev_io_start(s->home->loop, &s->r.cli.io);
	s->r.cli.events = EV_READ;
	timer_arm(s, ms(rt->timeout_preread_ms));
}

/* Arm the session timer to fire `after` seconds from now. */
static void
timer_arm(struct session *s, double after)
{
	ev_timer_stop(s->home->loop, &s->timer);
	ev_timer_set(&s->timer, after > 0 ? after : 0.0001, 0.);
	ev_timer_start(s->home->loop, &s->timer);
}

/*
 * A connect failed (err) for want of this host's own resources: not the
 * server's fault, so it is not counted against it. Say what ran out, at
 * most once a second, and end the session with RC.
 */
static void
local_shortage(struct session *s, const char *what, int err)
{
	static struct ratelimit	rl;
	unsigned long		n;

	if (log_ratelimit(&rl, 1)) {
		n = log_ratelimit_suppressed(&rl);
		log_warnx("frontend %s: cannot connect to %s/%s: out of %s "
		    "(%s); client closed (RC), server not blamed "
		    "(%lu more suppressed)", s->fe->name, s->be->name,
		    s->server ? s->server->name : "-", what, strerror(err), n);
	}
	session_close(s, "RC", false);
}

/*
 * send_proxy: put the PROXY header for srv ahead of the client's bytes:
 * the client (the header's, if one came in) and the address it reached.
 * false if the session was closed.
 */
static bool
proxy_header_put(struct session *s, struct server *srv, const struct pool *p)
{
	uint8_t			 hdr[128];	/* v2 IPv6, no TLV: 52 bytes */
	struct sockaddr_storage	 dst;
	socklen_t		 len = sizeof(dst);
	int			 v = atomic_load_explicit(&srv->send_proxy,
				    memory_order_relaxed), n;

	if (v == SEND_PROXY_UNSET)
		v = p->send_proxy;
	if (v == SEND_PROXY_NONE)
		return true;
	if (s->dst.sin6_family != 0)
		memcpy(&dst, &s->dst, sizeof(s->dst));
	else if (getsockname(s->r.cli.fd, (struct sockaddr *)&dst, &len) == -1)
		memset(&dst, 0, sizeof(dst));	/* sent as UNSPEC / UNKNOWN */
	n = proxyproto_encode(v, (struct sockaddr *)&s->client,
	    (struct sockaddr *)&dst, NULL, 0, hdr, sizeof(hdr));
	if (n < 0 || relay_prefix(&s->r, hdr, (size_t)n) == -1) {
		local_shortage(s, "memory", errno ? errno : ENOMEM);
		return false;
	}
	return true;
}

/* The pick decision, at debug: which server, by what rule, which try. */
static void
pick_log(struct session *s, struct pool *p, struct server *srv)
{
	char abuf[NET_ADDRSTRLEN];

	log_debug("session %s: client %s: picked %s/%s by %s (attempt %d, "
	    "%u active, effective weight %.2f%s%s)", s->fe->name,
	    net_addr_str((struct sockaddr *)&s->client, abuf, sizeof(abuf)),
	    s->be->name, srv->name, p->ops->name, s->attempts + 1,
	    atomic_load_explicit(&srv->cur, memory_order_relaxed),
	    (double)atomic_load_explicit(&srv->eff_weight,
	    memory_order_relaxed) / LOADWEIGHT_SCALE, srv->backup ?
	    ", backup" : "", s->pk.ntried > 1 ? ", after a failed try" : "");
}

/* No longer waiting for a first server: out of the backend's gauge. */
static void
queue_leave(struct session *s)
{
	if (s->queued_be == NULL)
		return;
	atomic_fetch_sub_explicit(&s->queued_be->queued, 1,
	    memory_order_relaxed);
	s->queued_be = NULL;
}

/* Pick a server and start connecting; or wait; or give up. */
static void
session_connect(struct session *s)
{
	struct pool	*p;
	struct server	*srv;
	const char	*what;
	ev_tstamp	 now = ev_now(s->home->loop);

	if (s->t_ready == 0)
		s->t_ready = now;	/* the wait for a server starts */
	/* Until a connect started, follow the frontend to the backend it
	 * uses now: a reload may have changed it while we waited. */
	if (s->attempts == 0 && !s->routed)
		s->be = atomic_load_explicit(&s->fe->backend,
		    memory_order_acquire);
	p = backend_pool(s->be);
	/* Settings come from the pool current at this attempt. */
	s->timeout_connect_ms = p->timeout_connect_ms;
	s->timeout_server_ms = p->timeout_server_ms;
	s->timeout_queue_ms = p->timeout_queue_ms;
	s->retries = p->retries;

	while (s->pk.ntried < PICK_MAX_TRIED &&
	    (srv = server_pick(p, &s->pk)) != NULL) {
		s->pk.tried[s->pk.ntried++] = srv;
		if (log_enabled(LOG_LVL_DEBUG))
			pick_log(s, p, srv);
		session_use(s, srv);
		if (s->attempts++ == 0) {
			queue_leave(s);
			s->t_first_connect = now;
			hist_add(&s->be->queue, us_between(s->t_ready, now));
		}
		s->t_connect = now;
		switch (atomic_load_explicit(&srv->fault,
		    memory_order_relaxed)) {
		case FAULT_BLACKHOLE:	/* no answer: timeout_connect */
			s->r.srv.fd = -1;
			s->state = SS_CONNECTING;
			timer_arm(s, ms(s->timeout_connect_ms));
			return;
		case FAULT_RESET:	/* refused at once */
			s->r.srv.fd = -1;
			errno = ECONNREFUSED;
			break;
		default:
			s->r.srv.fd = net_connect((struct sockaddr *)&srv->addr,
			    srv->addrlen);
		}
		if (s->r.srv.fd != -1) {
			s->state = SS_CONNECTING;
			if (proxy_header_put(s, srv, p))
				connect_started(s);
			return;
		}
		/* Failed at once: our shortage (fds, ports...) or the
		 * server's fault. */
		if ((what = net_local_shortage(errno)) != NULL) {
			local_shortage(s, what, errno);
			return;
		}
		atomic_fetch_add_explicit(&srv->connect_fail, 1,
		    memory_order_relaxed);
		server_note_failure(srv);
		server_done(srv);
		session_use(s, NULL);
		if (s->attempts > s->retries) {
			session_close(s, "SC", false);
			return;
		}
	}
	/*
	 * Nothing tried yet: every usable server is at its maxconn, or no
	 * server is eligible at all (all checking or down after a start, a
	 * reload or a flap). Either is a wait of up to timeout_queue, picking
	 * again every QUEUE_POLL from the pool current then.
	 */
	if (s->attempts == 0 && now - s->t_accept < ms(s->timeout_queue_ms)) {
		s->state = SS_QUEUED;
		if (s->queued_be == NULL) {
			s->queued_be = s->be;
			atomic_fetch_add_explicit(&s->be->queued, 1,
			    memory_order_relaxed);
		}
		timer_arm(s, QUEUE_POLL);
		return;
	}
	if (s->pk.full && s->attempts == 0)
		session_close(s, "sQ", false);
	else
		session_close(s, s->term ? s->term : "SC", false);
}

/* The current connect attempt failed (err: its errno, 0 for a timeout):
 * count it and try another server. */
static void
connect_failed(struct session *s, const char *term, int err)
{
	struct server	*srv = s->server;
	const char	*what;

	ev_io_stop(s->home->loop, &s->r.srv.io);
	if (s->r.srv.ssl != NULL) {
		SSL_free(s->r.srv.ssl);
		s->r.srv.ssl = NULL;
		ERR_clear_error();
	}
	net_close(s->r.srv.fd);
	s->r.srv.fd = -1;
	s->r.srv.events = 0;
	relay_unprefix(&s->r);	/* the next server may want none */
	if ((what = net_local_shortage(err)) != NULL) {
		local_shortage(s, what, err);
		return;
	}
	atomic_fetch_add_explicit(&srv->connect_fail, 1, memory_order_relaxed);
	server_note_failure(srv);
	log_debug("session %s: connect to %s/%s failed (%s)", s->fe->name,
	    s->be->name, srv->name, term);
	server_done(srv);
	session_use(s, NULL);
	s->term = term;
	if (s->attempts > s->retries) {
		session_close(s, term, false);
		return;
	}
	session_connect(s);
}

/* Connected, and the hold of an injected delay over: relay. */
static void
relay_begin(struct session *s)
{
	double	c = ms(s->timeout_client_ms), v = ms(s->timeout_server_ms);

	s->state = SS_RELAY;
	s->r.cli.active = s->r.srv.active = ev_now(s->home->loop);
	s->term = NULL;
	timer_arm(s, c < v ? c : v);	/* the idle timer */
	relay_start(&s->r);
}

/* The server accepted: from now on bytes flow both ways (after the delay
 * injected into this server, if any: the session waits in CONNECTING,
 * its server socket unwatched, so the delay shows as time to first
 * byte). */
static void
connect_done(struct session *s)
{
	uint32_t d;

	s->t_connected = ev_now(s->home->loop);
	hist_add(&s->server->lat[LAT_CONNECT], us_between(s->t_connect,
	    s->t_connected));
	if (atomic_load_explicit(&s->server->fault, memory_order_relaxed) ==
	    FAULT_DELAY && (d = atomic_load_explicit(
	    &s->server->fault_delay_ms, memory_order_relaxed)) > 0) {
		ev_io_stop(s->home->loop, &s->r.srv.io);
		s->r.srv.events = 0;
		s->fault_hold = true;
		s->state = SS_CONNECTING;
		timer_arm(s, ms(d));
		return;
	}
	relay_begin(s);
}

/* Act on relay_connect_send()'s answer: true if the session moved on
 * (connected, failed over to another server, or closed). */
static bool
connect_settle(struct session *s, int r)
{
	switch (r) {
	case RELAY_CLOSED:
		return true;
	case RELAY_CONNFAIL:
		connect_failed(s, "SC", errno);
		return true;
	case RELAY_SENT:
		connect_done(s);
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* TLS origination: the PROXY header in the clear, then the handshake,
 * all within timeout_connect; a failure tries another server. */

static void	tls_connect_io_cb(struct ev_loop *, ev_io *, int);

/* Our PROXY header goes to a TLS server before the handshake. 1 sent (or
 * none), 0 not yet (writable later), -1 failed (errno). */
static int
prefix_send(struct session *s)
{
	struct relay	*r = &s->r;
	struct buf	*b = r->cli.buf;
	ssize_t		 n;

	while (r->prefix > 0) {
		n = send(r->srv.fd, b->data + b->off, r->prefix, MSG_NOSIGNAL);
		if (n > 0) {
			b->off += (uint32_t)n;
			r->prefix -= (uint32_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
	if (b != NULL && buf_pending(b) == 0) {
		buf_put(r->bufs, b);
		r->cli.buf = NULL;
	}
	return 1;
}

/* The server's handshake failed (e from SSL_get_error): count, say, and
 * try another server. */
static void
srv_handshake_failed(struct session *s, int e)
{
	static struct ratelimit	 rl;
	SSL			*ssl = s->r.srv.ssl;
	enum tls_fail		 why = tls_fail_reason(ssl, e, errno);
	const char		*detail = NULL;
	unsigned long		 err;
	long			 vr;

	atomic_fetch_add_explicit(&s->be->tls_stats.fail[why], 1,
	    memory_order_relaxed);
	if (log_ratelimit(&rl, 1)) {
		if (why == TLS_FAIL_VERIFY &&
		    (vr = SSL_get_verify_result(ssl)) != X509_V_OK)
			detail = X509_verify_cert_error_string(vr);
		else if ((err = ERR_peek_last_error()) != 0)
			detail = ERR_reason_error_string(err);
		log_warnx("backend %s: server %s: TLS handshake failed: %s%s%s "
		    "(%lu more suppressed)", s->be->name, s->server->name,
		    tls_fail_name(why), detail != NULL ? ": " : "",
		    detail != NULL ? detail : "",
		    log_ratelimit_suppressed(&rl));
	}
	connect_failed(s, "SH", 0);
}

/* Drive the server's handshake; over: the relay starts. */
static void
srv_handshake_step(struct session *s)
{
	SSL	*ssl = s->r.srv.ssl;
	int	 r, e;

	ERR_clear_error();
	errno = 0;
	if ((r = SSL_do_handshake(ssl)) == 1) {
		tls_count_ok(&s->be->tls_stats, ssl);
		s->srv_tls_ver = tls_version_name(ssl);
		connect_done(s);
		return;
	}
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		side_watch(s, &s->r.srv, e == SSL_ERROR_WANT_READ ? EV_READ :
		    EV_WRITE, tls_connect_io_cb);
		return;
	}
	srv_handshake_failed(s, e);
}

/* Connected to a TLS server, our header sent: its SSL, from the
 * backend's context as it is now. The name sent (and verified): tls_sni,
 * else the client's own SNI when we terminated, else none. false if the
 * session moved on. */
static bool
srv_tls_begin(struct session *s)
{
	struct tls_be	*t = atomic_load_explicit(&s->be->tls,
			    memory_order_acquire);
	const char	*name = NULL;
	SSL		*ssl;

	if (t == NULL) {		/* a reload turned TLS off */
		connect_done(s);
		return false;
	}
	if (t->sni[0] != '\0')
		name = t->sni;
	else if (s->r.cli.ssl != NULL)
		name = SSL_get_servername(s->r.cli.ssl,
		    TLSEXT_NAMETYPE_host_name);
	ERR_clear_error();
	if ((ssl = tlsctx_client_ssl(t->ctx, name)) == NULL ||
	    SSL_set_fd(ssl, s->r.srv.fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		local_shortage(s, "memory", ENOMEM);
		return false;
	}
	tls_be_ssl_prepare(t, ssl, s->server);
	SSL_set_connect_state(ssl);
	s->r.srv.ssl = ssl;
	return true;
}

static void
tls_connect_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct relay_side	*sd = io->data;
	struct session		*s = session_of(sd->r);

	(void)loop;
	(void)revents;
	if (sd->ssl == NULL) {
		if (net_connect_result(sd->fd) == -1) {
			connect_failed(s, "SC", errno);
			return;
		}
		switch (prefix_send(s)) {
		case -1:
			connect_failed(s, "SC", errno);
			return;
		case 0:
			return;		/* writable again later */
		}
		if (!srv_tls_begin(s))
			return;
	}
	srv_handshake_step(s);
}

/*
 * A connect is under way (or done: loopback). Send the client's first
 * bytes at once if they are there: most of the time that connects the
 * session without a poll round. Otherwise wait until the server socket is
 * writable. A TLS server waits for writable: its handshake comes first.
 */
static void
connect_started(struct session *s)
{
	if (atomic_load_explicit(&s->be->tls, memory_order_acquire) != NULL) {
		side_watch(s, &s->r.srv, EV_WRITE, tls_connect_io_cb);
		timer_arm(s, ms(s->timeout_connect_ms));
		return;
	}
	if (connect_settle(s, relay_connect_send(&s->r, s->attempts == 1)))
		return;
	ev_io_set(&s->r.srv.io, s->r.srv.fd, EV_WRITE);
	ev_set_cb(&s->r.srv.io, connect_io_cb);
	ev_io_start(s->home->loop, &s->r.srv.io);
	s->r.srv.events = EV_WRITE;
	timer_arm(s, ms(s->timeout_connect_ms));
}

static void
connect_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct relay_side	*sd = io->data;
	struct session		*s = session_of(sd->r);

	(void)loop;
	(void)revents;
	/* Bytes to send prove the connection (or its failure) themselves;
	 * with none, ask the socket. */
	if (buf_pending(s->r.cli.buf) > 0 &&
	    connect_settle(s, relay_connect_send(&s->r, false)))
		return;
	if (net_connect_result(s->r.srv.fd) == -1) {
		connect_failed(s, "SC", errno);
		return;
	}
	connect_done(s);
}

static void
session_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct session	*s = t->data;
	ev_tstamp	 now = ev_now(loop), cdl, sdl;

	(void)revents;
	switch (s->state) {
	case SS_HEADER:
		refuse(s, "cP", &s->fe->refused_proxy_timeout,
		    "no complete PROXY header within timeout_proxy");
		return;
	case SS_PREREAD: {
		struct sni_routes *rt = atomic_load_explicit(&s->fe->routes,
		    memory_order_acquire);
		struct clienthello ch;

		memset(&ch, 0, sizeof(ch));
		if (rt != NULL)
			preread_done(s, rt, CLIENTHELLO_NEED_MORE, &ch);
		else {
			client_watch_reset(s);
			s->state = SS_QUEUED;
			session_connect(s);
		}
		return;
	}
	case SS_QUEUED:
		session_connect(s);
		return;
	case SS_HANDSHAKE:
		atomic_fetch_add_explicit(&s->fe->tls_stats.fail[
		    TLS_FAIL_TIMEOUT], 1, memory_order_relaxed);
		session_close(s, "cH", false);
		return;
	case SS_CONNECTING:
		if (s->fault_hold) {
			s->fault_hold = false;
			relay_begin(s);
			return;
		}
		if (s->r.srv.ssl != NULL) {
			atomic_fetch_add_explicit(&s->be->tls_stats.fail[
			    TLS_FAIL_TIMEOUT], 1, memory_order_relaxed);
			connect_failed(s, "sH", 0);
		} else
			connect_failed(s, "sC", 0);
		return;
	case SS_RELAY:
		cdl = s->r.cli.active + ms(s->timeout_client_ms);
		sdl = s->r.srv.active + ms(s->timeout_server_ms);
		if (now >= cdl) {
			session_close(s, "cD", false);
			return;
		}
		if (now >= sdl) {
			session_close(s, "sD", false);
			return;
		}
		/* Lazy idle timer: activity only moved the deadline. */
		timer_arm(s, (cdl < sdl ? cdl : sdl) - now);
		return;
	case SS_CLOSED:
		return;
	}
}

static void
session_log(struct session *s)
{
	char		 cbuf[NET_ADDRSTRLEN];
	ev_tstamp	 now = ev_now(s->home->loop);
	long		 tc = -1, tt, tq;
	/* TLS termination: version and ALPN (and the SNI, as routing by
	 * SNI logs it); TLS origination: the server side's version. */
	bool		 tls = atomic_load_explicit(&s->fe->tls,
			    memory_order_relaxed) != NULL || s->tls;
	bool		 sni = s->preread || tls;

	if (!log_enabled(LOG_LVL_INFO))
		return;
	if (s->t_connected > 0)
		tc = (long)((s->t_connected - s->t_connect) * 1000 + 0.5);
	tt = (long)((now - s->t_accept) * 1000 + 0.5);
	/* Time waiting for a server (queue): until the first connect. */
	tq = (long)(((s->t_first_connect > 0 ? s->t_first_connect : now) -
	    s->t_accept) * 1000 + 0.5);
	/* New fields go at the end: parsers of the line rely on the order. */
	log_info("session client=%s frontend=%s server=%s/%s connect_ms=%ld "
	    "total_ms=%ld bytes_in=%llu bytes_out=%llu term=%s retries=%d "
	    "queue_ms=%ld%s%s%s%s%s%s%s%s",
	    net_addr_str((struct sockaddr *)&s->client, cbuf, sizeof(cbuf)),
	    s->fe->name, s->be->name,
	    s->server ? s->server->name : "-", tc, tt,
	    (unsigned long long)s->r.srv.sent,
	    (unsigned long long)s->r.cli.sent,
	    s->term, s->attempts > 0 ? s->attempts - 1 : 0, tq,
	    sni ? " sni=" : "", sni ? (s->sni != NULL ? s->sni : "-") : "",
	    tls ? " tls=" : "", tls ? (s->tls_ver != NULL ? s->tls_ver : "-") :
	    "", tls ? " alpn=" : "", tls ? (s->alpn[0] != '\0' ? s->alpn :
	    "-") : "", s->srv_tls_ver != NULL ? " srv_tls=" : "",
	    s->srv_tls_ver != NULL ? s->srv_tls_ver : "");
}

void
session_close(struct session *s, const char *term, bool rst)
{
	struct session_home *h = s->home;

	if (s->state == SS_CLOSED)
		return;
	s->state = SS_CLOSED;
	s->term = term;
	queue_leave(s);
	ev_timer_stop(h->loop, &s->timer);
	relay_side_close(&s->r.cli, rst);
	relay_side_close(&s->r.srv, rst);
	session_log(s);
	if (s->server != NULL && s->t_connected > 0)
		hist_add(&s->server->lat[LAT_SESSION], us_between(
		    s->t_connected, ev_now(h->loop)));
	server_done(s->server);
	session_use(s, NULL);
	free(s->pr);
	s->pr = NULL;
	free(s->sni);
	s->sni = NULL;
	if (s->held != NULL) {
		client_release(s->held, (struct sockaddr *)&s->client);
		s->held = NULL;
	}
	TAILQ_REMOVE(&h->sessions, s, entry);
	if (--h->nsessions == 0)
		relay_pipes_release();	/* an idle worker holds no pipe */
	/* Never free inside our own callback stack: defer to the reaper. */
	s->next_dead = h->dead;
	h->dead = s;
	h->slot_freed(h, s->fe);
}

void
session_reap(struct session_home *h)
{
	struct session *s;

	while ((s = h->dead) != NULL) {
		h->dead = s->next_dead;
		free(s);
	}
}
