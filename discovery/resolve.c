/*
 * resolve.c - asynchronous name resolution on a libev loop (c-ares).
 *
 * c-ares tells us which sockets it wants watched (ARES_OPT_SOCK_STATE_CB);
 * one ev_io per socket feeds ares_process_fd(), and one ev_timer, re-armed
 * from ares_timeout() after every step, drives retries and timeouts.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <ares_nameser.h>
#include <ev.h>

#include "log.h"
#include "resolve.h"

#define RESOLVE_SOCKS_MAX	16	/* sockets c-ares may hold at once */

struct resolver_sock {
	ev_io		 io;		/* fd -1 = free slot */
	struct resolver	*r;
};

struct lookup {
	struct resolver		*r;
	resolver_cb		*cb;		/* one of these two */
	resolver_answer_cb	*acb;
	bool			 internal;	/* acb is ours (SRV targets):
						   called even when freeing */
	void			*arg;
	unsigned short		 port;
	size_t			 max;		/* addresses kept */
	char			*name;
};

struct resolver {
	struct ev_loop		*loop;
	ares_channel		 ch;
	ev_timer		 timer;
	struct resolver_sock	 socks[RESOLVE_SOCKS_MAX];
	size_t			 pending;	/* lookups not answered */
	bool			 freeing;	/* callbacks suppressed */
};

static int	library_users;

static void	rearm(struct resolver *);

static struct resolver_sock *
sock_find(struct resolver *r, int fd)
{
	for (size_t i = 0; i < RESOLVE_SOCKS_MAX; i++)
		if (r->socks[i].io.fd == fd)
			return &r->socks[i];
	return NULL;
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct resolver_sock	*s = w->data;
	struct resolver		*r = s->r;
	int			 fd = w->fd;

	(void)loop;
	ares_process_fd(r->ch, revents & EV_READ ? fd : ARES_SOCKET_BAD,
	    revents & EV_WRITE ? fd : ARES_SOCKET_BAD);
	rearm(r);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct resolver *r = w->data;

	(void)loop;
	(void)revents;
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm(r);
}

/* c-ares: start, change or stop watching fd. */
static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct resolver		*r = data;
	struct resolver_sock	*s = sock_find(r, fd);
	int			 ev = (readable ? EV_READ : 0) |
			    (writable ? EV_WRITE : 0);

	if (s != NULL) {
		ev_io_stop(r->loop, &s->io);
		if (ev == 0) {
			ev_io_set(&s->io, -1, 0);
			return;
		}
	} else {
		if (ev == 0)
			return;
		if ((s = sock_find(r, -1)) == NULL) {
			/* Cannot happen with the few lookups we run; the
			 * timer still completes the lookup (as a timeout). */
			log_warnx("resolve: too many DNS sockets");
			return;
		}
	}
	ev_io_set(&s->io, fd, ev);
	ev_io_start(r->loop, &s->io);
}

/* Re-arm the timer for c-ares' next deadline; stop it when idle. */
static void
rearm(struct resolver *r)
{
	struct timeval	 max = { 1, 0 }, tv, *t;

	ev_timer_stop(r->loop, &r->timer);
	if (r->pending == 0)
		return;
	t = ares_timeout(r->ch, &max, &tv);
	ev_timer_set(&r->timer, t->tv_sec + t->tv_usec / 1e6 + 0.001, 0);
	ev_timer_start(r->loop, &r->timer);
}

static bool
same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* The answer's distinct addresses, port set, into addrs[max]; *ttl the
 * smallest record TTL. Returns how many. */
static size_t
collect(const struct ares_addrinfo *res, unsigned short port,
    struct sockaddr_storage *addrs, size_t max, unsigned *ttl)
{
	const struct ares_addrinfo_node	*nd;
	size_t				 n = 0, i;

	*ttl = 0;
	for (nd = res->nodes; nd != NULL && n < max; nd = nd->ai_next) {
		if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
		    nd->ai_addrlen > sizeof(addrs[0]))
			continue;
		memset(&addrs[n], 0, sizeof(addrs[n]));
		memcpy(&addrs[n], nd->ai_addr, nd->ai_addrlen);
		if (nd->ai_family == AF_INET)
			((struct sockaddr_in *)&addrs[n])->sin_port =
			    htons(port);
		else
			((struct sockaddr_in6 *)&addrs[n])->sin6_port =
			    htons(port);
		if (n == 0 || (nd->ai_ttl >= 0 && (unsigned)nd->ai_ttl < *ttl))
			*ttl = nd->ai_ttl > 0 ? (unsigned)nd->ai_ttl : 0;
		for (i = 0; i < n; i++)
			if (same_addr(&addrs[i], &addrs[n]))
				break;
		if (i == n)
			n++;
	}
	return n;
}

static void
lookup_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct lookup		*l = arg;
	struct resolver		*r = l->r;
	struct resolve_answer	 a;
	struct sockaddr_storage	*addrs;

	(void)timeouts;
	r->pending--;
	memset(&a, 0, sizeof(a));
	addrs = calloc(l->max ? l->max : 1, sizeof(*addrs));
	if (addrs == NULL)
		a.err = "out of memory";
	else if (status == ARES_SUCCESS && res != NULL)
		a.n = collect(res, l->port, addrs, l->max, &a.ttl);
	a.addrs = addrs;
	a.nx = status == ARES_ENOTFOUND || status == ARES_ENODATA ||
	    (status == ARES_SUCCESS && a.n == 0);
	if (a.err == NULL && a.n == 0)
		a.err = status == ARES_SUCCESS ? "no address" :
		    ares_strerror(status);
	if (res != NULL)
		ares_freeaddrinfo(res);
	if (l->internal)
		l->acb(l->arg, l->name, &a);
	else if (!r->freeing) {
		if (l->acb != NULL)
			l->acb(l->arg, l->name, &a);
		else if (a.n > 0)
			l->cb(l->arg, l->name, a.addrs, a.n, NULL);
		else
			l->cb(l->arg, l->name, NULL, 0, a.err);
	}
	free(addrs);
	free(l->name);
	free(l);
}

struct resolver *
resolver_new(struct ev_loop *loop)
{
	struct ares_options	 o;
	struct resolver		*r;
	int			 rc;

	if (library_users == 0 &&
	    (rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		log_warnx("resolve: c-ares: %s", ares_strerror(rc));
		return NULL;
	}
	library_users++;
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		log_warn("resolve");
		goto fail;
	}
	r->loop = loop;
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state_cb;
	o.sock_state_cb_data = r;
	o.timeout = 1000;	/* ms per try */
	o.tries = 2;
	if ((rc = ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB |
	    ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES)) != ARES_SUCCESS) {
		log_warnx("resolve: c-ares: %s", ares_strerror(rc));
		free(r);
		goto fail;
	}
	for (size_t i = 0; i < RESOLVE_SOCKS_MAX; i++) {
		ev_io_init(&r->socks[i].io, io_cb, -1, 0);
		r->socks[i].io.data = &r->socks[i];
		r->socks[i].r = r;
	}
	ev_timer_init(&r->timer, timer_cb, 0, 0);
	r->timer.data = r;
	return r;
fail:
	if (--library_users == 0)
		ares_library_cleanup();
	return NULL;
}

static int
lookup_start(struct resolver *r, const char *name, int family,
    unsigned short port, size_t max, resolver_cb *cb,
    resolver_answer_cb *acb, void *arg, bool internal)
{
	struct ares_addrinfo_hints	 h;
	struct lookup			*l;

	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->name = strdup(name)) == NULL) {
		free(l);
		errno = ENOMEM;
		return -1;
	}
	l->r = r;
	l->cb = cb;
	l->acb = acb;
	l->internal = internal;
	l->arg = arg;
	l->port = port;
	l->max = max;
	memset(&h, 0, sizeof(h));
	h.ai_family = family;
	h.ai_socktype = SOCK_DGRAM;
	h.ai_flags = ARES_AI_NOSORT | ARES_AI_ENVHOSTS;
	r->pending++;
	/* May answer at once (numeric, hosts file): lookup_cb runs inside. */
	ares_getaddrinfo(r->ch, l->name, NULL, &h, lookup_cb, l);
	rearm(r);
	return 0;
}

int
resolver_start(struct resolver *r, const char *name, int family,
    unsigned short port, resolver_cb *cb, void *arg)
{
	return lookup_start(r, name, family, port, RESOLVE_ADDRS_MAX, cb, NULL,
	    arg, false);
}

int
resolver_query(struct resolver *r, const char *name, int family,
    unsigned short port, size_t max, resolver_answer_cb *cb, void *arg)
{
	return lookup_start(r, name, family, port, max, NULL, cb, arg, false);
}

/* ---- SRV: the records, then each target's addresses ---------------- */

struct srv_lookup {
	struct resolver		*r;
	resolver_answer_cb	*cb;
	void			*arg;
	char			*name;
	size_t			 max;
	size_t			 left;		/* target lookups running, +1
						   while starting them */
	struct sockaddr_storage	*addrs;		/* [max] */
	unsigned short		*weight, *priority;
	size_t			 n;
	unsigned		 ttl;
	const char		*err;		/* no target answered: why */
	bool			 nx;
};

struct srv_target {
	struct srv_lookup	*sl;
	unsigned short		 weight, priority;
};

static void
srv_free(struct srv_lookup *sl)
{
	free(sl->addrs);
	free(sl->weight);
	free(sl->priority);
	free(sl->name);
	free(sl);
}

/* Every target answered (or the records did not come): the answer. */
static void
srv_done(struct srv_lookup *sl)
{
	struct resolve_answer a;

	if (!sl->r->freeing) {
		memset(&a, 0, sizeof(a));
		a.addrs = sl->addrs;
		a.n = sl->n;
		a.ttl = sl->ttl;
		a.weight = sl->weight;
		a.priority = sl->priority;
		a.nx = sl->n == 0 && sl->nx;
		a.err = sl->n > 0 ? NULL : sl->err != NULL ? sl->err :
		    "no address";
		sl->cb(sl->arg, sl->name, &a);
	}
	srv_free(sl);
}

static void
srv_target_cb(void *arg, const char *name, const struct resolve_answer *a)
{
	struct srv_target	*t = arg;
	struct srv_lookup	*sl = t->sl;

	(void)name;
	for (size_t i = 0; i < a->n && sl->n < sl->max; i++) {
		if (sl->n == 0 || a->ttl < sl->ttl)
			sl->ttl = a->ttl;
		sl->addrs[sl->n] = a->addrs[i];
		sl->weight[sl->n] = t->weight;
		sl->priority[sl->n] = t->priority;
		sl->n++;
	}
	if (a->n == 0 && !a->nx) {
		sl->err = "a target did not resolve";
		sl->nx = false;
	}
	free(t);
	if (--sl->left == 0)
		srv_done(sl);
}

static void
srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct srv_lookup	*sl = arg;
	struct resolver		*r = sl->r;
	struct ares_srv_reply	*srv = NULL, *p;
	struct srv_target	*t;

	(void)timeouts;
	r->pending--;
	if (status != ARES_SUCCESS) {
		sl->nx = status == ARES_ENOTFOUND || status == ARES_ENODATA;
		sl->err = ares_strerror(status);
		srv_done(sl);
		return;
	}
	if ((status = ares_parse_srv_reply(abuf, alen, &srv)) != ARES_SUCCESS) {
		sl->nx = status == ARES_ENODATA;
		sl->err = sl->nx ? "no SRV record" : "malformed SRV answer";
		srv_done(sl);
		return;
	}
	sl->left = 1;
	sl->nx = true;		/* unless a target fails */
	for (p = srv; p != NULL && !r->freeing; p = p->next) {
		if ((t = calloc(1, sizeof(*t))) == NULL)
			continue;
		t->sl = sl;
		t->weight = p->weight;
		t->priority = p->priority;
		sl->left++;
		if (lookup_start(r, p->host, AF_UNSPEC, p->port, sl->max, NULL,
		    srv_target_cb, t, true) == -1) {
			sl->left--;
			free(t);
		}
	}
	ares_free_data(srv);
	if (--sl->left == 0)
		srv_done(sl);
}

int
resolver_srv(struct resolver *r, const char *name, size_t max,
    resolver_answer_cb *cb, void *arg)
{
	struct srv_lookup *sl;

	if ((sl = calloc(1, sizeof(*sl))) == NULL ||
	    (sl->name = strdup(name)) == NULL ||
	    (sl->addrs = calloc(max ? max : 1, sizeof(*sl->addrs))) == NULL ||
	    (sl->weight = calloc(max ? max : 1, sizeof(*sl->weight))) == NULL ||
	    (sl->priority = calloc(max ? max : 1,
	    sizeof(*sl->priority))) == NULL) {
		if (sl != NULL)
			srv_free(sl);
		errno = ENOMEM;
		return -1;
	}
	sl->r = r;
	sl->cb = cb;
	sl->arg = arg;
	sl->max = max;
	r->pending++;
	ares_query(r->ch, sl->name, C_IN, T_SRV, srv_cb, sl);
	rearm(r);
	return 0;
}

int
resolver_set_servers(struct resolver *r, const char *servers_csv,
    const char **why)
{
	int rc;

	if ((rc = ares_set_servers_ports_csv(r->ch, servers_csv)) !=
	    ARES_SUCCESS) {
		*why = ares_strerror(rc);
		return -1;
	}
	return 0;
}

size_t
resolver_pending(const struct resolver *r)
{
	return r->pending;
}

void
resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	r->freeing = true;
	ares_destroy(r->ch);	/* answers pending lookups: callbacks muted */
	for (size_t i = 0; i < RESOLVE_SOCKS_MAX; i++)
		ev_io_stop(r->loop, &r->socks[i].io);
	ev_timer_stop(r->loop, &r->timer);
	free(r);
	if (--library_users == 0)
		ares_library_cleanup();
}
